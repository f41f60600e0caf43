"""The alert rules and the dashboard against a real Prometheus server scraping a real
`ingestd api` and `ingestd worker`: every dashboard query and every alert's series exist,
and (with a shortened `for:`) the backlog and worker-down alerts fire when the worker stops
and resolve when it comes back. Also `promtool check rules` and `promtool test rules`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from receivers import Receiver, start_ingestd
from support import ServerProcess, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "ingestd.json"
SELECTOR = re.compile(r"\b(ingestd[a-z0-9_:]*|up)\b(\{[^}]*\})?")


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is missing: `make test` installs Debian's prometheus package")
        pytest.skip(f"{name} is not installed (make prometheus)")
    return found


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    checked = subprocess.run([tool("promtool"), "check", "rules", str(RULES)], capture_output=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [tool("promtool"), "test", "rules", str(RULE_TESTS)], capture_output=True
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def alert_rules() -> list[dict[str, Any]]:
    """The alerts of alerts.yml, read with Prometheus's own parser (promtool's JSON dump
    is not there in 2.42; the YAML is simple enough to take apart by its keys)."""
    import yaml

    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_every_alert_has_a_summary_and_a_runbook_section() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text().lower()
    alerts = [rule for rule in alert_rules() if "alert" in rule]
    assert len(alerts) >= 10
    for rule in alerts:
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], rule["alert"]
        anchor = annotations["runbook"].split("#", 1)[1]
        assert anchor == rule["alert"].lower()
        assert f"### {rule['alert'].lower()}" in operations, f"no runbook for {rule['alert']}"


def dashboard_queries() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", ())]
    assert len(exprs) >= 15
    return [e.replace("$__rate_interval", "1m").replace('"$destination"', '".*"') for e in exprs]


def shortened(rules: str) -> str:
    """The rules with every `for:` of minutes cut to seconds (the integration test's clock)."""
    return re.sub(r"for: \d+m", "for: 2s", rules)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


class Prometheus:
    """A real `prometheus` on a free port, its own TSDB under tmp, scraping every second."""

    def __init__(self, tmp: Path, api: str, worker: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (tmp / "alerts.yml").write_text(shortened(RULES.read_text()))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": ["alerts.yml"],
            "scrape_configs": [
                {"job_name": "ingestd-api", "static_configs": [{"targets": [api]}]},
                {"job_name": "ingestd-worker", "static_configs": [{"targets": [worker]}]},
            ],
        }
        (tmp / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.log = tmp / "prometheus.log"
        self.args = [
            tool("prometheus"),
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Prometheus:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=log)
        return self

    def __exit__(self, *_: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    async def api(self, client: httpx.AsyncClient, path: str, **params: str) -> Any:
        reply = await client.get(f"{self.url}/api/v1/{path}", params=params)
        body = reply.json()
        assert body["status"] == "success", (path, params, body)
        return body["data"]

    async def query(self, client: httpx.AsyncClient, expr: str) -> list[Any]:
        result: list[Any] = (await self.api(client, "query", query=expr))["result"]
        return result

    async def firing(self, client: httpx.AsyncClient) -> set[str]:
        alerts = (await self.api(client, "alerts"))["alerts"]
        return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}


async def test_dashboard_and_alerts_on_a_real_prometheus(
    tmp_path: Path, receiver: Receiver
) -> None:
    hook = f'[[destinations]]\nname = "ok"\nkind = "webhook"\nurl = "{receiver.url("/ok")}"\n'
    api = await start_ingestd(tmp_path, hook, command="api")
    worker_port = free_port()
    worker = ServerProcess(tmp_path, port=worker_port, command="worker", env=api.env)
    prometheus = Prometheus(tmp_path, f"127.0.0.1:{api.port}", f"127.0.0.1:{worker_port}")
    try:
        await worker.start()
        await worker.wait_ready()
        with prometheus:
            async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
                await wait_for(lambda: _ready(client, prometheus.url), 30, 0.2)
                # A short load: 200 events, delivered.
                for start in range(0, 200, 50):
                    batch = [{"source": "load", "id": f"e{start + n}"} for n in range(50)]
                    reply = await client.post("/ingest/batch", json={"events": batch})
                    assert reply.status_code == 207, reply.text
                await client.get("/ingest/e1/status")
                await wait_for(lambda: _true(len(receiver.received("/ok")) >= 200), 30)

                # Every dashboard query, and every series an alert reads, has data.
                async def all_answer() -> list[str]:
                    missing = [
                        e for e in dashboard_queries() if not await prometheus.query(client, e)
                    ]
                    for rule in alert_rules():
                        for name, labels in SELECTOR.findall(rule["expr"]):
                            if not await prometheus.query(client, name + labels):
                                missing.append(name + labels)
                    return missing

                await _until_empty(all_answer, 30)
                rules = (await prometheus.api(client, "rules"))["groups"]
                health = {
                    r["name"]: (r["health"], r.get("lastError") or "")
                    for g in rules
                    for r in g["rules"]
                }
                assert len(health) == len(alert_rules())
                assert all(h == ("ok", "") for h in health.values()), health
                assert "IngestdBacklogHigh" not in await prometheus.firing(client)

                # The worker stops; 1,200 events wait: backlog and worker-down fire.
                assert await worker.stop() == 0
                for start in range(1000, 2200, 600):
                    batch = [{"source": "load", "id": f"e{start + n}"} for n in range(600)]
                    reply = await client.post("/ingest/batch", json={"events": batch})
                    assert reply.status_code == 207, reply.text

                async def both_fire() -> set[str]:
                    firing = await prometheus.firing(client)
                    return (
                        firing if {"IngestdBacklogHigh", "IngestdWorkerDown"} <= firing else set()
                    )

                await wait_for(both_fire, 60, 0.5)

                # The worker comes back: it drains the backlog and both resolve.
                await worker.start()
                await wait_for(lambda: _true(len(receiver.received("/ok")) >= 1400), 60)

                async def both_resolved() -> bool:
                    firing = await prometheus.firing(client)
                    return not firing & {"IngestdBacklogHigh", "IngestdWorkerDown"}

                await wait_for(both_resolved, 60, 0.5)
    finally:
        await worker.stop()
        await api.stop()


async def _ready(client: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await client.get(f"{url}/-/ready")).status_code == 200
    except httpx.HTTPError:
        return False


async def _true(value: bool) -> bool:
    return value


async def _until_empty(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        missing = await check()
        if not missing:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no series for: {missing}")
        await asyncio.sleep(1)
