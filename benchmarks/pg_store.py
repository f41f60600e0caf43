"""Store-level throughput: group-commit accept and claim+finish, PostgreSQL beside SQLite.

    python -m benchmarks.pg_store [--events 50000] [--group 1000] [--workers 4]

Each backend gets a fresh database. accept: groups of `--group` events (one destination
each, client ids so every event has an idempotency key) committed one after another by
`--writers` concurrent committers (as API processes would). claim+finish: `--workers`
concurrent loops claiming `--batch` jobs and finishing them as succeeded (a no-op
destination).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

from benchmarks import backends
from ingestd.ingest.envelope import parse_event
from ingestd.routing import delivery_id
from ingestd.store import Store, store_from_url
from ingestd.store.protocol import JobResult, Routed, Verdict


def make_group(start: int, size: int) -> list[Routed]:
    group = []
    for i in range(start, start + size):
        sub = parse_event(
            {"source": "bench", "type": "order.created", "id": f"ev-{i}", "data": {"i": i}}
        )
        group.append(Routed(sub, (("noop", delivery_id(sub.event, "noop")),)))
    return group


async def bench(url: str, args: argparse.Namespace) -> dict[str, float]:
    stores: list[Store] = []
    for _ in range(max(args.writers, args.workers)):
        store = store_from_url(url)
        await store.open()
        stores.append(store)
    try:
        groups = [make_group(n, args.group) for n in range(0, args.events, args.group)]
        queue = list(groups)
        latencies: list[float] = []

        async def writer(store: Store) -> None:
            while queue:
                group = queue.pop()
                t0 = time.perf_counter()
                await store.accept(group, time.time())
                latencies.append(time.perf_counter() - t0)

        t0 = time.perf_counter()
        await asyncio.gather(*(writer(s) for s in stores[: args.writers]))
        accept_s = time.perf_counter() - t0

        single = make_group(args.events, 200)
        t1 = time.perf_counter()
        for item in single:
            await stores[0].accept([item], time.time())
        single_s = (time.perf_counter() - t1) / len(single)

        done = 0

        async def worker(store: Store, name: str) -> None:
            nonlocal done
            while True:
                jobs = await store.claim(name, args.batch, 30.0, time.time())
                if not jobs:
                    return
                results = [JobResult(job_id=j.id, verdict=Verdict.SUCCEEDED) for j in jobs]
                done += await store.finish(name, results, time.time())

        t2 = time.perf_counter()
        await asyncio.gather(*(worker(s, f"w{n}") for n, s in enumerate(stores[: args.workers])))
        work_s = time.perf_counter() - t2
        latencies.sort()
        return {
            "accept events/s": args.events / accept_s,
            "group p50 ms": latencies[len(latencies) // 2] * 1000,
            "single accept ms": single_s * 1000,
            "claim+finish jobs/s": done / work_s,
        }
    finally:
        for store in stores:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--group", type=int, default=1000)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--backend", choices=["both", "postgres", "sqlite"], default="both")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    if args.backend in ("both", "postgres"):
        with backends.database("postgres", Path(tempfile.gettempdir()), "pg-store") as url:
            results["postgres"] = asyncio.run(bench(url, args))
    if args.backend in ("both", "sqlite"):
        with tempfile.TemporaryDirectory() as tmp, contextlib.suppress(KeyboardInterrupt):
            results["sqlite"] = asyncio.run(bench(f"sqlite:///{tmp}/bench.db", args))
    for backend, figures in results.items():
        print(backend, "  ".join(f"{k}: {v:,.1f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
