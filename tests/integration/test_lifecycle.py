"""Lifecycle of a real server: SIGTERM drains, `ingestd drain`, migrations and newer schemas."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import INGESTD, ServerProcess, all_events, free_port, handler_env, run_cli, wait_for


def slow_destinations(schedule: list[float] | None = None) -> list[dict[str, Any]]:
    dest: dict[str, Any] = {"name": "slow", "kind": "handler", "handler": "handlers.sinks:slow"}
    if schedule:
        dest["retry_schedule"] = schedule
    return [dest]


def db_path(server: ServerProcess) -> Path:
    return Path(server.database_url.removeprefix("sqlite:///"))


async def wait_exit(server: ServerProcess, timeout: float = 20) -> int:
    assert server.proc is not None

    async def exited() -> bool:
        return server.proc is not None and server.proc.poll() is not None

    await wait_for(exited, timeout=timeout)
    return server.proc.returncode


async def statuses(client: httpx.AsyncClient, ids: list[str]) -> list[dict[str, Any]]:
    responses = await asyncio.gather(*(client.get(f"/ingest/{i}/status") for i in ids))
    return [r.json() for r in responses]


# -- SIGTERM ---------------------------------------------------------------------------


async def test_sigterm_under_load_loses_nothing_and_releases_leases(tmp_path: Path) -> None:
    env = handler_env(
        tmp_path,
        slow_destinations(),
        INGESTD_TEST_SLOW="5",  # deliveries still running when SIGTERM arrives
        INGESTD_SHUTDOWN_GRACE="1",
    )
    server = ServerProcess(tmp_path, port=free_port(), env=env)
    await server.start()
    accepted: list[str] = []
    stop_sending = asyncio.Event()

    async def sender(n: int, c: httpx.AsyncClient) -> None:
        i = 0
        while not stop_sending.is_set():
            event_id = f"term-{n}-{i}"
            i += 1
            try:
                r = await c.post("/ingest", json={"source": "term", "id": event_id})
            except httpx.TransportError:
                return  # the server is gone: this one was not acknowledged
            if r.status_code == 202:
                accepted.append(event_id)
            else:
                assert r.status_code == 503, r.text  # shutting down: never a silent drop
                return

    async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
        senders = [asyncio.create_task(sender(n, c)) for n in range(8)]

        async def enough() -> bool:
            return len(accepted) >= 150

        await wait_for(enough, timeout=20)
        server.signal(signal.SIGTERM)
        await wait_exit(server)
        stop_sending.set()
        await asyncio.gather(*senders)

    # Restart on the same database with a fast handler: every acknowledged event is there,
    # and deliveries that were running at SIGTERM were released (attempt not spent).
    env["INGESTD_TEST_SLOW"] = "0"
    server = ServerProcess(tmp_path, port=free_port(), env=env)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
            stored = [e["id"] for e in await all_events(c, source="term")]
            assert len(stored) == len(set(stored))
            assert set(accepted) <= set(stored)

            async def all_completed() -> bool:
                return all(s["status"] == "completed" for s in await statuses(c, stored))

            await wait_for(all_completed, timeout=30, interval=0.2)
            for status in await statuses(c, stored):
                [delivery] = status["destinations"]
                assert delivery["attempts"] == 1, status
    finally:
        await server.stop()


async def test_sigterm_exits_zero(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, port=free_port())
    await server.start()
    async with httpx.AsyncClient(base_url=server.url) as c:
        assert (await c.post("/ingest", json={"source": "s"})).status_code == 202
    server.signal(signal.SIGTERM)
    code = await wait_exit(server)
    assert code == 0, server.logs()
    assert "Traceback" not in server.logs()


# -- ingestd drain ---------------------------------------------------------------------


async def test_drain_waits_until_the_backlog_is_empty(tmp_path: Path) -> None:
    env = handler_env(tmp_path, slow_destinations(), INGESTD_TEST_SLOW="1.5")
    server = ServerProcess(tmp_path, port=free_port(), env=env)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as c:
            ids = [uuid.uuid4().hex for _ in range(20)]
            r = await c.post(
                "/ingest/batch", json={"events": [{"source": "d", "id": i} for i in ids]}
            )
            assert r.json()["accepted"] == 20
            result = await asyncio.to_thread(
                run_cli,
                "drain",
                "--timeout",
                "30",
                "--interval",
                "0.1",
                env={"INGESTD_DATABASE_URL": server.database_url},
            )
            assert result.returncode == 0, result.stderr
            assert "drained" in result.stdout
            assert "waiting" in result.stderr  # it did have something to wait for
            assert {s["status"] for s in await statuses(c, ids)} == {"completed"}
    finally:
        await server.stop()


async def test_drain_gives_up_after_its_timeout(tmp_path: Path) -> None:
    # A delivery that failed and waits a minute for its retry keeps the backlog non-empty.
    env = handler_env(
        tmp_path,
        [
            {
                "name": "broken",
                "kind": "handler",
                "handler": "handlers.sinks:fail",
                "retry_schedule": [0, 60],
            }
        ],
    )
    server = ServerProcess(tmp_path, port=free_port(), env=env)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as c:
            r = await c.post("/ingest", json={"source": "d", "id": "stuck"})
            assert r.status_code == 202

            async def failed() -> bool:
                return bool((await c.get("/ingest/stuck/status")).json()["status"] == "failed")

            await wait_for(failed)
        result = await asyncio.to_thread(
            run_cli,
            "drain",
            "--timeout",
            "0.5",
            "--interval",
            "0.1",
            env={"INGESTD_DATABASE_URL": server.database_url},
        )
        assert result.returncode != 0
        assert "not drained" in result.stderr
    finally:
        await server.stop()


def test_drain_on_an_empty_store_returns_at_once(tmp_path: Path) -> None:
    env = {"INGESTD_DATABASE_URL": f"sqlite:///{tmp_path}/empty.db"}
    result = run_cli("drain", "--timeout", "5", env=env)
    assert result.returncode == 0, result.stderr
    assert "drained" in result.stdout


# -- migrations ------------------------------------------------------------------------


def schema_versions(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT version FROM ingestd_schema ORDER BY version")]


def test_migrate_twice_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    env = {"INGESTD_DATABASE_URL": f"sqlite:///{path}"}
    first = run_cli("migrate", env=env)
    assert first.returncode == 0, first.stderr
    versions = schema_versions(path)
    assert versions
    assert versions == sorted(set(versions))
    second = run_cli("migrate", env=env)
    assert second.returncode == 0, second.stderr
    assert schema_versions(path) == versions
    with sqlite3.connect(path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"events", "idempotency_keys", "deliveries"} <= tables
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_migrate_keeps_existing_data(tmp_path: Path) -> None:
    path = tmp_path / "keep.db"
    env = {"INGESTD_DATABASE_URL": f"sqlite:///{path}"}
    assert run_cli("migrate", env=env).returncode == 0
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO events (tenant_id, id, source, type, occurred_at, received_at, data) "
            "VALUES ('default', 'kept', 's', 't', '2026-01-01T00:00:00.000000Z', 0, '{}')"
        )
    assert run_cli("migrate", env=env).returncode == 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT id FROM events").fetchall() == [("kept",)]


@pytest.fixture
def newer_db(tmp_path: Path) -> str:
    path = tmp_path / "newer.db"
    url = f"sqlite:///{path}"
    assert run_cli("migrate", env={"INGESTD_DATABASE_URL": url}).returncode == 0
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO ingestd_schema (version) VALUES (999)")
    return url


def test_migrate_refuses_a_newer_schema(newer_db: str) -> None:
    result = run_cli("migrate", env={"INGESTD_DATABASE_URL": newer_db})
    assert result.returncode != 0
    assert "999" in result.stderr
    assert "upgrade" in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_newer_schema(newer_db: str, tmp_path: Path) -> None:
    port = free_port()
    result = subprocess.run(
        [INGESTD, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={**handler_env(tmp_path), "INGESTD_DATABASE_URL": newer_db, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "999" in output
    assert "upgrade" in output.lower()
    # Nothing was changed: the database still says 999.
    assert schema_versions(Path(newer_db.removeprefix("sqlite:///")))[-1] == 999
