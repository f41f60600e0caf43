"""Handlers for `kind = "handler"` destinations, run inside the real server process.

State that must outlive a process (attempt counters, call logs) goes to files in
INGESTD_TEST_DIR, which the tests set per server.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any


def _dir() -> Path:
    return Path(os.environ.get("INGESTD_TEST_DIR", "."))


def _log(name: str, line: str) -> None:
    # One small O_APPEND write per call: lines never interleave between threads.
    fd = os.open(_dir() / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def ok(event: Any) -> None:
    """A sync handler that always succeeds."""
    _log("ok.log", event.id)


async def ok_async(event: Any, job: Any) -> None:
    """An async handler that succeeds and records the stable delivery id."""
    _log("ok_async.log", f"{event.id} {job.delivery_id} {job.attempt}")


def fail(event: Any) -> None:
    """Always raises: retries, then dead."""
    _log("fail.log", event.id)
    raise RuntimeError(f"handler refused {event.id}")


def flaky(event: Any) -> None:
    """Fails the first two attempts of each event, then succeeds."""
    counter = _dir() / f"flaky-{event.id}"
    seen = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(seen + 1))
    if seen < 2:
        raise RuntimeError(f"flaky attempt {seen + 1}")


async def slow(event: Any) -> None:
    """Takes a while (cancellable): lets shutdown find deliveries in flight."""
    await asyncio.sleep(float(os.environ.get("INGESTD_TEST_SLOW", "0.3")))
    _log("slow.log", event.id)


def exits(event: Any) -> None:
    """A sync handler that asks the process to exit: must be a failed attempt only."""
    _log("exits.log", event.id)
    raise SystemExit(3)


async def interrupts(event: Any) -> None:
    """An async handler raising KeyboardInterrupt: a failed attempt, the process lives on."""
    _log("interrupts.log", event.id)
    raise KeyboardInterrupt("from a handler")


def dies(event: Any) -> None:
    """Ends the process at once (no exception to catch): the crash-loop case."""
    _log("dies.log", event.id)
    os._exit(17)
