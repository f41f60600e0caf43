"""The benchmarks' loop-lag ticker sees a blocked event loop."""

from __future__ import annotations

import asyncio
import time

from ingestd.bench.looplag import LoopLag


async def test_a_blocked_loop_shows_as_lag() -> None:
    lag = LoopLag()
    lag.start()
    await asyncio.sleep(0.02)
    time.sleep(0.06)  # holds the loop, as a store call on the loop thread would
    await asyncio.sleep(0.02)
    await lag.stop()
    seen = lag.snapshot(reset=True)
    assert seen["ticks"] >= 2
    assert seen["max_us"] >= 50_000  # a lower bound: a busy machine only adds lag
    assert lag.snapshot()["ticks"] == 0  # reset started a new histogram
