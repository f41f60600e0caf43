"""A no-op handler destination that records when each event was delivered.

Declared in the benchmark's TOML file as `handler = "benchmarks.handlers:record"` (the
server runs with the repository root on PYTHONPATH). Each delivery appends
"<event id> <time.time()>" to the file named by BENCH_DELIVERY_LOG, line-buffered so the
benchmark can read it while the server runs. It is async, so the worker calls it on the
event loop (no thread hop): what it measures is ingestd's own path from commit to delivery.
"""

from __future__ import annotations

import os
import time
from typing import IO, Any

_out: IO[str] | None = None

NOOP_TOML = """\
[[destinations]]
name = "noop"
kind = "handler"
handler = "benchmarks.handlers:noop"
max_in_flight = 10000
"""
"""A destination config for INGESTD_CONFIG: every event goes to `noop` below."""


async def record(event: Any) -> None:
    global _out
    if _out is None:
        _out = open(os.environ["BENCH_DELIVERY_LOG"], "a", buffering=1)  # noqa: SIM115
    _out.write(f"{event.id} {time.time():.6f}\n")


async def noop(event: Any) -> None:
    """Does nothing: the worker's own cost per job (claim, call, finish) is what remains."""
