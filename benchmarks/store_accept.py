"""In-process cost of SQLiteStore.accept, without HTTP: the store's own ceiling.

    python -m benchmarks.store_accept [--events 20000] [--workdir /tmp/...]

For each synchronous mode and group size it accepts groups of unique ~300-byte events
(no destinations) and prints the commit latency per group and events/s. Compare with
`run.py`'s batch figure: what the HTTP path adds on top of this.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
from pathlib import Path

from benchmarks.loadgen import event_json
from ingestd.ingest.envelope import decode_json, parse_event
from ingestd.store.protocol import Routed
from ingestd.store.sqlite import SQLiteStore


async def one(workdir: Path, sync: str, group: int, events: int) -> str:
    folder = workdir / f"store-{sync}-{group}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    store = SQLiteStore(folder / "x.db", synchronous=sync)
    await store.open()
    times = []
    n = 0
    for _ in range(max(10, events // group)):
        batch = []
        for _ in range(group):
            n += 1
            doc = decode_json(event_json(f"e{n}").encode())
            batch.append(Routed(parse_event(doc, received_at=time.time()), ()))
        started = time.perf_counter()
        await store.accept(batch, time.time())
        times.append(time.perf_counter() - started)
    await store.close()
    times.sort()
    count = len(times)
    return (
        f"{sync:6s} group {group:5d}: commit p50 {times[count // 2] * 1e3:7.2f} ms "
        f"p99 {times[int(count * 0.99)] * 1e3:7.2f} ms  {group * count / sum(times):9,.0f} events/s"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/ingestd-bench"))
    args = p.parse_args()
    for sync in ("FULL", "NORMAL"):
        for group in (1, 16, 64, 100, 1000):
            print(asyncio.run(one(args.workdir, sync, group, args.events)), flush=True)


if __name__ == "__main__":
    main()
