"""SQLiteStore.accept with a busy Python thread beside it: the GIL contention of a server.

    python -m benchmarks.store_contention [--events 20000]
    PYTHONPATH=/tmp/snap/src python -m benchmarks.store_contention   # a frozen copy of src/

In a server the event loop keeps the GIL busy while the writer thread inserts; a store
that hands the GIL back once per row then waits for it once per row. Here a thread spins
in pure Python (as the loop would) while groups of unique ~300-byte events are accepted
(SQLite FULL), with no destination and with one. Prints events/s (commit wall) and how
many k-iterations/s the spinner kept. Alternate two copies of src/ to compare them.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import threading
import time
from pathlib import Path

from benchmarks.loadgen import event_json
from ingestd.ingest.envelope import decode_json, parse_event
from ingestd.store.protocol import Routed
from ingestd.store.sqlite import SQLiteStore


def groups(size: int, count: int, destinations: int) -> list[list[Routed]]:
    out, n = [], 0
    for _ in range(count):
        group = []
        for _ in range(size):
            n += 1
            sub = parse_event(decode_json(event_json(f"e{n}").encode()), received_at=1.0)
            group.append(Routed(sub, tuple((f"d{k}", f"x{n}-{k}") for k in range(destinations))))
        out.append(group)
    return out


async def one(workdir: Path, size: int, events: int, destinations: int) -> tuple[float, float]:
    folder = workdir / f"contention-{size}-{destinations}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    store = SQLiteStore(folder / "x.db", synchronous="FULL")
    await store.open()
    prepared = groups(size, max(10, events // size), destinations)
    stop = threading.Event()
    spins = 0

    def spin() -> None:
        nonlocal spins
        while not stop.is_set():
            for _ in range(1000):
                pass
            spins += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    began = time.perf_counter()
    for group in prepared:
        await store.accept(group, time.time())
    wall = time.perf_counter() - began
    stop.set()
    spinner.join()
    await store.close()
    return sum(len(g) for g in prepared) / wall, spins / wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/ingestd-bench"))
    args = p.parse_args()
    for destinations in (0, 1):
        for size in (32, 1000):
            eps, spins = asyncio.run(one(args.workdir, size, args.events, destinations))
            print(
                f"destinations {destinations} group {size:4d}: {eps:8,.0f} events/s, "
                f"spinner {spins:8,.0f} k-iterations/s",
                flush=True,
            )


if __name__ == "__main__":
    main()
