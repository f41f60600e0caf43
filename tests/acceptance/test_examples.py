"""examples/*/README.md, run as written: each application's event reaches ingestd."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import psycopg
import pytest

from conftest import require
from docs_commands import DONE, ROOT, run_page
from support import PG_ADMIN, free_port

EXAMPLES = ROOT / "examples"

# The pages run in the checkout (`make -C clients/typescript build`, `npm ci` in an example):
# under xdist they share one worker with the quick start's.
pytestmark = pytest.mark.xdist_group("pages-in-the-checkout")


def events_printed(out: str, source: str) -> list[dict[str, object]]:
    """The events of the page's `GET /events?source=…` answer."""
    pages = [json.loads(line) for line in out.splitlines() if line.startswith('{"events":')]
    assert pages, f"no GET /events answer printed:\n{out[-3000:]}"
    return [e for e in pages[-1]["events"] if e["source"] == source]


def run_app_example(tmp_path: Path, name: str) -> str:
    ports = {"8000": str(free_port()), "8080": str(free_port())}
    env = {"INGESTD_DATABASE_URL": f"sqlite:///{tmp_path}/ingestd.db", "PORT": ports["8000"]}
    with run_page(EXAMPLES / name / "README.md", tmp_path, replace=ports, env=env) as page:
        out = page.wait_for(DONE, timeout=100)
        assert page.proc.poll() is None, f"a command failed:\n{out[-4000:]}"
        return out


def test_fastapi_app_emits_through_the_python_sdk(tmp_path: Path) -> None:
    out = run_app_example(tmp_path, "fastapi-app")
    created = next(json.loads(line) for line in out.splitlines() if line.startswith('{"id":"ord-'))
    [event] = events_printed(out, "orders")
    assert event["id"] == created["id"]
    assert event["type"] == "order.created"
    assert event["data"] == {"sku": "book-42", "quantity": 2, "email": "ada@example.com"}


@pytest.mark.skipif(shutil.which("node") is None, reason="node missing")
def test_node_app_emits_through_the_typescript_sdk(tmp_path: Path) -> None:
    out = run_app_example(tmp_path, "node-app")
    created = next(json.loads(line) for line in out.splitlines() if line.startswith('{"id":"usr-'))
    [event] = events_printed(out, "accounts")
    assert event["id"] == created["id"]
    assert event["type"] == "user.signed_up"
    assert event["data"] == {"email": "grace@example.com", "plan": "team"}


@pytest.mark.postgres
@pytest.mark.redis
def test_postgres_two_api_processes_a_worker_and_a_shared_rate_limit(tmp_path: Path) -> None:
    require("PostgreSQL")
    require("Redis")
    unique = uuid.uuid4().hex[:10]
    ports = {p: str(free_port()) for p in ("8001", "8002", "9000", "9465")}
    database = f"ingestd_example_{unique}"
    toml = (EXAMPLES / "postgres" / "ingestd.toml").read_text().replace("9000", ports["9000"])
    (tmp_path / "ingestd.toml").write_text(toml)
    env_file = (EXAMPLES / "postgres" / "ingestd.env").read_text()
    for old, new in (
        ("ingestd_example", database),
        ("ingestd-example:rl:", f"ingestd-example-{unique}:rl:"),
        ("examples/postgres/ingestd.toml", str(tmp_path / "ingestd.toml")),
    ):
        env_file = env_file.replace(old, new)
    (tmp_path / "ingestd.env").write_text(env_file)
    replace = {
        "examples/postgres/ingestd.env": str(tmp_path / "ingestd.env"),
        "ingestd_example": database,
        # The page alternates with 800$((i % 2 + 1)): make that the two free ports.
        "localhost:800$((i % 2 + 1))": (
            f"localhost:$(( i % 2 ? {ports['8002']} : {ports['8001']} ))"
        ),
        **ports,
    }
    try:
        with run_page(EXAMPLES / "postgres" / "README.md", tmp_path, replace=replace) as page:
            out = page.wait_for(DONE, timeout=100)
            assert page.proc.poll() is None, f"a command failed:\n{out[-4000:]}"
            assert any(
                line.startswith("verified msg_") and '"pg-1"' in line for line in out.splitlines()
            ), out[-3000:]
            status = next(json.loads(x) for x in out.splitlines() if x.startswith('{"id":"pg-1"'))
            assert status["status"] == "completed", status
            codes = next(x for x in out.splitlines() if x.startswith("202 ")).split()
            assert len(codes) == 10
            # One shared bucket of 4 (plus at most what refills at 1/s while the loop runs);
            # per-process buckets would have let 8 through.
            assert 4 <= codes.count("202") <= 6, codes
            assert set(codes) == {"202", "429"}, codes
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
