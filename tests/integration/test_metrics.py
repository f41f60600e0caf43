"""The metrics an operator alerts on, read from real processes: the API's GET /metrics and
`ingestd worker --metrics-port`'s /metrics, /health, /ready; `promtool check metrics` on both."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from receivers import Receiver, start_ingestd
from support import ServerProcess, free_port, wait_for

RETRIES = "retry_schedule = [0, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2]"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing: `make test` installs Debian's prometheus package")
        pytest.skip("promtool is not installed (make prometheus)")
    return found


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """name + labels → value, for every sample of an exposition."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


class Exposition:
    """One scrape's samples; `get` is -1 for a series that is absent (so > and == fail)."""

    def __init__(self, text: str) -> None:
        self.samples = samples(text)

    def get(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), -1.0)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    r.behave("/down", status=503)
    yield r
    await r.stop()


def config(receiver: Receiver) -> str:
    # "down" fails once, then waits an hour: its deliveries stay `failed` while we look.
    return "".join(
        f'[[destinations]]\nname = "{name}"\nkind = "webhook"\nurl = "{receiver.url(path)}"\n'
        f"{retries}\n"
        for name, path, retries in (
            ("ok", "/ok", RETRIES),
            ("down", "/down", "retry_schedule = [0, 3600]"),
        )
    )


async def test_api_and_worker_expose_what_the_alerts_read(
    tmp_path: Path, receiver: Receiver
) -> None:
    api = await start_ingestd(tmp_path, config(receiver), command="api")
    worker = ServerProcess(tmp_path, port=free_port(), command="worker", env=api.env)
    try:
        await worker.start()
        await worker.wait_ready()  # the worker's own /ready
        async with httpx.AsyncClient(base_url=api.url) as client:
            for n in range(10):
                reply = await client.post("/ingest", json={"source": "s", "id": f"e{n}"})
                assert reply.status_code == 202, reply.text
            assert (await client.get("/ingest/e0/status")).status_code == 200
            assert (await client.get("/ingest/nope/status")).status_code == 404
            await wait_for(lambda: _delivered(receiver, 10), 20)

            async def failing() -> str | None:
                # Failed once and waiting for the retry, or held back by the breaker (it
                # opens after five failures in a row): all ten wait, none delivered.
                text = (await client.get(f"{worker.url}/metrics")).text
                seen = Exposition(text)
                waiting = [
                    seen.get("ingestd_destination_deliveries", destination="down", state=state)
                    for state in ("pending", "running", "failed")
                ]
                return text if sum(waiting) == 10 and waiting[2] >= 5 else None

            worker_text = await wait_for(failing, 20)
            api_text = (await client.get("/metrics")).text
            health = await client.get(f"{worker.url}/health")
            assert health.status_code == 200 and health.json()["pid"] == worker.proc.pid  # type: ignore[union-attr]
    finally:
        await worker.stop()
        await api.stop()

    # The API: request durations by route template (never the raw id) and status class.
    api = Exposition(api_text)
    status_route = "/ingest/{event_id}/status"
    assert (
        api.get("ingestd_http_request_duration_seconds_count", route="/ingest", status="2xx") == 10
    )
    assert (
        api.get(
            "ingestd_http_request_duration_seconds_bucket", route="/ingest", status="2xx", le="1.0"
        )
        == 10
    )
    assert (
        api.get("ingestd_http_request_duration_seconds_count", route=status_route, status="2xx")
        == 1
    )
    assert (
        api.get("ingestd_http_request_duration_seconds_count", route=status_route, status="4xx")
        == 1
    )
    assert not any("e0" in str(labels) for _, labels in api.samples)
    # The worker: 202 → delivered latency, attempts by verdict, the store-derived gauges.
    worker_ = Exposition(worker_text)
    assert worker_.get("ingestd_delivery_latency_seconds_count", destination="ok") == 10
    assert worker_.get("ingestd_delivery_latency_seconds_count", destination="down") == 0
    # Five failures in a row open the breaker: the rest are deferred, not attempted.
    assert worker_.get("ingestd_deliveries_total", destination="down", verdict="retry") >= 5
    assert worker_.get("ingestd_destination_deliveries", destination="ok", state="pending") == 0
    assert worker_.get("ingestd_destination_oldest_waiting_seconds", destination="down") > 0
    assert worker_.get("ingestd_destination_oldest_waiting_seconds", destination="ok") == 0
    assert worker_.get("ingestd_destination_enabled", destination="ok") == 1
    assert worker_.get("ingestd_destination_breaker_state", destination="ok", state="closed") == 1
    assert worker_.get("ingestd_destination_dead_letters", destination="down") == 0
    build = [labels for name, labels in worker_.samples if name == "ingestd_build_info"]
    assert build and dict(build[0])["version"]
    # Both pass Prometheus's own lint (names, units, _total, help text).
    for text in (api_text, worker_text):
        checked = subprocess.run(
            [promtool(), "check", "metrics"], input=text.encode(), capture_output=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert not checked.stdout.strip(), checked.stdout


async def _delivered(receiver: Receiver, n: int) -> bool:
    return len({r.headers["webhook-id"] for r in receiver.received("/ok")}) >= n


async def test_worker_refuses_a_metrics_port_it_cannot_have(tmp_path: Path) -> None:
    taken = ServerProcess(tmp_path, port=free_port(), command="worker")
    await taken.start()
    try:
        await taken.wait_ready()
        second = ServerProcess(tmp_path, port=taken.port, command="worker")
        await second.start()
        assert second.proc is not None
        assert second.proc.wait(timeout=20) == 2
        assert f"cannot serve the worker's metrics on 127.0.0.1:{taken.port}" in second.logs()
    finally:
        await taken.stop()
