"""A real `ingestd serve` whose fsync fails (issue 14 item 15): strace fails every thread's
fsync/fdatasync with EIO. While it does, no 202: the first answers say the outcome is
unknown, the rest "not stored" (the store is recovering), /ready is 503. Once the failures
stop, writes resume without a restart, and resending every id gives a 200 duplicate or a
202, with each event stored exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from support import ServerProcess, free_port, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace (make sys-deps)"),
]


def untraced_threads(pid: int) -> list[str]:
    """The threads of `pid` that no tracer is attached to."""
    free = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            status = (task / "status").read_text()
            if "\nTracerPid:\t0\n" in status:
                free.append(task.name)
    return free


@contextlib.asynccontextmanager
async def failing_fsync(pid: int, log: Path) -> AsyncIterator[None]:
    tracer = subprocess.Popen(
        [
            "strace", "-f", "-qq", "-p", str(pid), "-e", "trace=fsync,fdatasync",
            "-e", "inject=fsync,fdatasync:error=EIO", "-o", str(log),
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while untraced_threads(pid):  # strace attaches thread by thread
            assert tracer.poll() is None, "strace exited"
            assert time.monotonic() < deadline, "strace did not attach to every thread"
            await asyncio.sleep(0.02)
        yield
    finally:
        tracer.terminate()  # strace detaches; the process runs on
        tracer.wait(10)


def event(n: int) -> dict[str, object]:
    return {"source": "fsync", "type": "t", "id": f"e{n}", "data": {"n": n}}


async def test_no_202_while_fsync_fails_then_writes_resume(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, port=free_port())
    await server.start()
    answers: dict[str, list[tuple[int, dict[str, object]]]] = {}
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:

            async def send(n: int) -> int:
                r = await http.post("/ingest", json=event(n))
                answers.setdefault(f"e{n}", []).append((r.status_code, r.json()))
                if r.status_code == 503:
                    assert r.headers.get("retry-after"), r.headers
                    assert r.headers["content-type"] == "application/problem+json"
                return r.status_code

            assert await send(0) == 202
            async with failing_fsync(server.pid, tmp_path / "strace.log"):
                during = [await send(n) for n in range(1, 6)]
                batch = await http.post(
                    "/ingest/batch", json={"events": [event(n) for n in range(6, 9)]}
                )
                ready = await http.get("/ready")
                await asyncio.sleep(1.5)  # recovery attempts fail meanwhile, at a bounded rate
                still = [await send(n) for n in (1, 2)]
                ready_later = await http.get("/ready")
            assert 202 not in during and set(during) == {503}, answers
            first = answers["e1"][0][1]
            assert first["type"] == "https://ingestd.dev/problems/outcome-unknown", first
            assert "may have been stored" in str(first["detail"])
            assert "same event id or Idempotency-Key is safe" in str(first["detail"])
            later = answers["e2"][0][1]  # refused at once, before writing anything
            assert later["type"] == "https://ingestd.dev/problems/store-unavailable", later
            assert "recovering after a failed fsync" in str(later["detail"])
            assert batch.status_code == 503, batch.text
            assert ready.status_code == 503, ready.text
            assert still == [503, 503] and ready_later.status_code == 503, answers

            async def resumed() -> bool:
                return (await http.get("/ready")).status_code == 200

            await wait_for(resumed, timeout=15)
            pid = server.pid
            again = {n: await send(n) for n in range(1, 9)}
            assert set(again.values()) <= {200, 202}, answers
            for n, status in again.items():
                if status == 200:  # only what may have been stored can be a duplicate
                    assert answers[f"e{n}"][-1][1]["status"] == "duplicate"
            assert server.proc is not None and server.proc.poll() is None and server.pid == pid
    finally:
        await server.stop()
    path = server.database_url.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(path)) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM events WHERE source = 'fsync'")]
    assert sorted(ids) == sorted(f"e{n}" for n in range(9)), ids  # each exactly once
    log = server.logs()
    assert log.count("a COMMIT failed (SQLITE_IOERR_FSYNC") == 1, log
    assert log.count("recovery failed, retrying") == 1, log
    assert log.count("recovered after a failed commit") == 1, log
