"""While ingest answers 503 its cause is logged once per change of state, with a count
(issue 14 item 17), on a real `ingestd serve` whose SQLite write lock another writer
holds."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx

from support import ServerProcess, free_port


async def test_503s_are_logged_once_with_a_count(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, port=free_port())
    await server.start()
    lock = sqlite3.connect(server.database_url.removeprefix("sqlite:///"), timeout=10)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            lock.execute("BEGIN IMMEDIATE")
            refused = await asyncio.gather(
                *(http.post("/ingest", json={"source": "s", "type": "t"}) for _ in range(4))
            )
            assert {r.status_code for r in refused} == {503}
            lock.rollback()
            accepted = await http.post("/ingest", json={"source": "s", "type": "t"})
            assert accepted.status_code == 202, accepted.text
            again = await http.post("/ingest", json={"source": "s", "type": "t"})
            assert again.status_code == 202
    finally:
        lock.close()
        await server.stop()
    log = server.logs()
    assert log.count("ingest is answering 503 (store-unavailable)") == 1, log
    assert log.count("ingest answered 4 request(s) 503 (store-unavailable)") == 1, log
    assert "accepting again" in log
