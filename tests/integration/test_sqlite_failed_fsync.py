"""A failed fsync at COMMIT on a real SQLite store (issue 14 item 15): the answer is
"outcome unknown", writes are refused at once, and a recovery resumes them without a
restart. The failure is real: strace fails the fsync/fdatasync calls of the store's writer
thread (only that thread, so the test process itself runs on)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingestd.errors import OutcomeUnknown, StoreUnavailable
from ingestd.store.sqlite.store import SQLiteStore

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")


@contextlib.contextmanager
def failing_fsync(tid: int, log: Path) -> Iterator[None]:
    """fsync/fdatasync of thread `tid` fail with EIO while inside."""
    tracer = subprocess.Popen(
        [
            "strace", "-qq", "-p", str(tid), "-e", "trace=fsync,fdatasync",
            "-e", "inject=fsync,fdatasync:error=EIO", "-o", str(log),
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not traced(tid):
            if time.monotonic() > deadline or tracer.poll() is not None:
                raise RuntimeError(f"strace did not attach: {tracer.stderr.read()!r}")  # type: ignore[union-attr]
            time.sleep(0.02)
        yield
    finally:
        tracer.terminate()
        tracer.wait(10)


def traced(tid: int) -> bool:
    status = Path(f"/proc/self/task/{tid}/status").read_text()
    return next(line for line in status.splitlines() if line.startswith("TracerPid:")) != (
        "TracerPid:\t0"
    )


async def writer_tid(store: SQLiteStore) -> int:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(store._db._writer, threading.get_native_id)


def events(path: str) -> list[str]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return [row[0] for row in conn.execute("SELECT id FROM events ORDER BY seq")]


async def accept_one(store: SQLiteStore, event_id: str) -> None:
    from ingestd.ingest.envelope import parse_event
    from ingestd.store.protocol import Routed

    sub = parse_event({"source": "s", "type": "t", "id": event_id, "data": {}})
    await store.accept([Routed(sub, ())], time.time())


async def test_a_failed_fsync_is_an_unknown_outcome_then_writes_resume(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "ingestd.db")
    await store.open()
    try:
        await accept_one(store, "before")
        tid = await writer_tid(store)
        with failing_fsync(tid, tmp_path / "strace.log"):
            with pytest.raises(OutcomeUnknown, match="its outcome is unknown"):
                await accept_one(store, "during")
            assert "EIO (Input/output error) (INJECTED)" in (tmp_path / "strace.log").read_text()
            # refused at once, without touching the disk: "not stored"
            with pytest.raises(StoreUnavailable, match="recovering after a failed fsync") as no:
                await accept_one(store, "refused")
            assert not isinstance(no.value, OutcomeUnknown)
            with pytest.raises(StoreUnavailable):
                await store.probe_commit()  # /ready's probe: 503 too
            assert await store.ping() is None  # reads go on
            await asyncio.sleep(1.0)  # recovery attempts fail while fsync fails
            with pytest.raises(StoreUnavailable, match="recovering"):
                await accept_one(store, "still refused")
        for _ in range(200):  # the failures stopped: recovery resumes writes
            try:
                await store.probe_commit()
                break
            except StoreUnavailable:
                await asyncio.sleep(0.05)
        await accept_one(store, "during")  # the client's retry under the same id
        await accept_one(store, "after")
    finally:
        await store.close()
    # The failed commit stayed rolled back (the probe overwrote its frames): its retry is
    # stored exactly once, and nothing refused is there.
    assert events(str(tmp_path / "ingestd.db")) == ["before", "during", "after"]
