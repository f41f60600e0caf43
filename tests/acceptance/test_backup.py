"""`ingestd backup PATH` while a server ingests, then a restore that finds every 202."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from pathlib import Path

import httpx

from support import ServerProcess, all_events, free_port, run_cli

LOAD_EVENTS = 600
SENDERS = 8


async def send_load(url: str, acked: list[tuple[float, str]], start: int, count: int) -> None:
    """POST events from SENDERS concurrent clients; record (time acknowledged, id) per 202."""
    loop = asyncio.get_running_loop()
    ids = iter(range(start, start + count))

    async def sender(client: httpx.AsyncClient) -> None:
        for n in ids:
            event = {"source": "backup-test", "type": "t", "id": f"e-{n}", "data": {"n": n}}
            response = await client.post("/ingest", json=event)
            assert response.status_code == 202, response.text
            acked.append((loop.time(), f"e-{n}"))

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await asyncio.gather(*(sender(client) for _ in range(SENDERS)))


async def run_backup(env: dict[str, str], path: Path) -> tuple[float, str]:
    """`ingestd backup` in a subprocess; returns the time it started and its stdout."""
    started = asyncio.get_running_loop().time()
    result = await asyncio.to_thread(run_cli, "backup", str(path), env=env)
    assert result.returncode == 0, result.stderr
    return started, result.stdout


async def test_backup_while_serving_restores_every_acknowledged_event(tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    server = ServerProcess(live, port=free_port())
    env = {"INGESTD_DATABASE_URL": server.database_url}
    acked: list[tuple[float, str]] = []
    await server.start()
    try:
        await send_load(server.url, acked, 0, 100)
        # A backup taken in the middle of a steady load: consistent, and holding at least
        # every event acknowledged before it started.
        load = asyncio.create_task(send_load(server.url, acked, 100, LOAD_EVENTS))
        await asyncio.sleep(0.2)
        during_started, _ = await run_backup(env, tmp_path / "during.db")
        await load
        final_started, stdout = await run_backup(env, tmp_path / "final.db")
    finally:
        await server.stop()

    assert '"events": ' in stdout
    during = sqlite3.connect(tmp_path / "during.db")
    [(check,)] = during.execute("PRAGMA integrity_check").fetchall()
    assert check == "ok"
    in_during = {row[0] for row in during.execute("SELECT id FROM events")}
    # Every event in the copy has its idempotency key: a committed state, not a torn one.
    # (An event keyed by its own `source:id` holds the key in its row, as a fingerprint.)
    orphans = during.execute(
        "SELECT count(*) FROM events e WHERE e.fingerprint IS NULL AND NOT EXISTS "
        "(SELECT 1 FROM idempotency_keys k WHERE k.event_id = e.id)"
    ).fetchone()[0]
    during.close()
    before_during = {eid for t, eid in acked if t < during_started}
    assert len(before_during) >= 100
    assert before_during <= in_during
    assert len(in_during) < 100 + LOAD_EVENTS, "the backup did not overlap the load"
    assert orphans == 0

    # Restore: the backup file becomes the database of a new server.
    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copy(tmp_path / "final.db", restored / "ingestd.db")
    server = ServerProcess(restored, port=free_port())
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            found = {e["id"] for e in await all_events(client, source="backup-test")}
            assert {eid for t, eid in acked if t < final_started} == found
            assert len(found) == 100 + LOAD_EVENTS
            same = {"source": "backup-test", "type": "t", "id": "e-1", "data": {"n": 1}}
            again = await client.post("/ingest", json=same)
            assert again.status_code == 200, again.text  # idempotency keys came back too
    finally:
        await server.stop()


def test_backup_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    env = {"INGESTD_DATABASE_URL": f"sqlite:///{tmp_path}/none.db"}
    missing = run_cli("backup", str(tmp_path / "b.db"), env=env)
    assert missing.returncode == 2
    assert "no SQLite database" in missing.stderr

    env = {"INGESTD_DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite"}
    assert run_cli("migrate", env=env).returncode == 0
    target = tmp_path / "taken.db"
    target.write_bytes(b"keep me")
    taken = run_cli("backup", str(target), env=env)
    assert taken.returncode == 2
    assert "exists" in taken.stderr
    assert target.read_bytes() == b"keep me"
    assert run_cli("backup", str(target), "--force", env=env).returncode == 0
    assert target.read_bytes().startswith(b"SQLite format 3")
    assert not list(tmp_path.glob(".taken.db.partial*"))

    pg = run_cli(
        "backup", str(tmp_path / "pg.db"), env={"INGESTD_DATABASE_URL": "postgresql://h/d"}
    )
    assert pg.returncode == 2
    assert "pg_dump" in pg.stderr
    assert "Traceback" not in pg.stderr
