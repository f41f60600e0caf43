"""How late the event loop runs a 1 ms timer: the loop's lag, for the benchmarks.

A server started with INGESTD_BENCH_NOOP runs one ticker and serves its histogram at
GET /_bench/loop-lag (`?reset=1` starts a new one). Anything that holds the loop —
a store call on the loop thread, a long parse — shows as a late tick, whatever the
request that suffered from it. Off by default: a ticker wakes the loop 1,000 times a
second.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from ingestd.bench.histogram import Histogram

INTERVAL = 0.001


class LoopLag:
    """A ticker on the running loop recording, in µs, how late each tick fired."""

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self.histogram = Histogram()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._tick(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.histogram.record(max(0, int((loop.time() - due) * 1_000_000)))

    def snapshot(self, reset: bool = False) -> dict[str, Any]:
        h = self.histogram
        ps = h.percentiles((50.0, 99.0, 99.9)) if h.count else {50.0: 0, 99.0: 0, 99.9: 0}
        out = {
            "ticks": h.count,
            "interval_us": int(self.interval * 1_000_000),
            "p50_us": ps[50.0],
            "p99_us": ps[99.0],
            "p999_us": ps[99.9],
            "max_us": h.max if h.count else 0,
        }
        if reset:
            self.histogram = Histogram()
        return out
