"""`ingestd api --workers N`: N API processes on one port (PostgreSQL), stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiohttp
import psycopg
import pytest

from support import ServerProcess, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


class MultiProcessApi(ServerProcess):
    """`ingestd api --workers N` (one supervisor, N API processes on one port)."""

    def __init__(self, tmp: Path, pg_url: str, workers: int) -> None:
        super().__init__(
            tmp,
            port=free_port(),
            command="api",
            database_url=pg_url,
            env={"INGESTD_LOG_LEVEL": "info"},
        )
        self.args = ["--workers", str(workers)]

    async def start(self, timeout: float = 30.0) -> None:
        await super().start(timeout)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_two_api_processes_share_one_port_and_stop_on_sigterm(
    tmp_path: Path, pg_url: str
) -> None:
    server = MultiProcessApi(tmp_path, pg_url, workers=2)
    await server.start()
    assert server.proc is not None
    try:
        # A new connection per request, many at once: the kernel spreads them.
        connector = aiohttp.TCPConnector(force_close=True, limit=64)
        pids: set[int] = set()
        accepted = 0
        async with aiohttp.ClientSession(connector=connector) as session:

            async def health() -> int:
                async with session.get(server.url + "/health") as r:
                    assert r.status == 200
                    return int((await r.json())["pid"])

            async def ingest(n: int) -> int:
                event = {"source": "multi", "type": "t", "id": f"m{n}", "data": {}}
                async with session.post(server.url + "/ingest", json=event) as r:
                    return r.status

            deadline = time.monotonic() + 30
            round_ = 0
            while len(pids) < 2 and time.monotonic() < deadline:
                pids.update(await asyncio.gather(*(health() for _ in range(64))))
                statuses = await asyncio.gather(*(ingest(round_ * 64 + i) for i in range(64)))
                assert set(statuses) == {202}, statuses
                accepted += len(statuses)
                round_ += 1
        assert len(pids) == 2, f"one process answered every connection: {pids}"
        assert server.proc.pid not in pids  # the supervisor serves nothing itself
        with psycopg.connect(pg_url) as conn:
            row = conn.execute("SELECT count(*) FROM events WHERE source = 'multi'").fetchone()
        assert row is not None and row[0] == accepted

        server.signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        while server.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert server.proc.returncode == 0, server.logs()[-3000:]
        assert not [p for p in pids if alive(p)], "an API process outlived SIGTERM"
    finally:
        await server.stop()
