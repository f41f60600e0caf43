"""The benchmark endpoints of a server started with INGESTD_BENCH_NOOP, and only then."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from support import ServerProcess, free_port


async def test_loop_lag_is_served_with_bench_noop_only(tmp_path: Path) -> None:
    on = ServerProcess(tmp_path / "on", port=free_port(), env={"INGESTD_BENCH_NOOP": "true"})
    off = ServerProcess(tmp_path / "off", port=free_port())
    (tmp_path / "on").mkdir()
    (tmp_path / "off").mkdir()
    await asyncio.gather(on.start(), off.start())
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            await asyncio.sleep(0.2)  # some ticks
            first = (await client.get(f"{on.url}/_bench/loop-lag?reset=1")).json()
            assert first["ticks"] > 10 and first["interval_us"] == 1000
            assert first["max_us"] >= first["p99_us"] >= first["p50_us"] >= 0
            again = (await client.get(f"{on.url}/_bench/loop-lag")).json()
            assert again["ticks"] < first["ticks"]  # reset started a new count
            assert (await client.get(f"{off.url}/_bench/loop-lag")).status_code == 404
    finally:
        await asyncio.gather(on.stop(), off.stop())
