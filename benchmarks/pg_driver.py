"""psycopg 3 or asyncpg for the PostgreSQL store? The same accept statement, both drivers.

Runs ingestd's real group-commit statement (`accept` in store/postgres.sql: keys, event ids,
events and delivery jobs from one JSON document, in one transaction) through each driver:

- `single`: one connection, one event per transaction, back to back (commit latency bound);
- `concurrent`: N connections each committing one event per transaction (what many
  un-grouped writers would do);
- `group`: one connection, G events per transaction (what group commit sends under load).

Each case runs for both drivers alternately, `--rounds` times, on a fresh database, so the
machine's noise hits both alike. Needs asyncpg, which ingestd does not depend on:

    python3 -m venv /tmp/asyncpg-venv && /tmp/asyncpg-venv/bin/pip install asyncpg
    PYTHONPATH=/tmp/asyncpg-venv/lib/python3.11/site-packages \\
        python -m benchmarks.pg_driver
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from ingestd.store.postgres import PostgresStore, id_base
from ingestd.store.sql import queries

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
SQL = queries("postgres")["accept"]
NAMES = ["rows", "deliveries", "now", "expires_at", "base"]
Commit = Callable[[int], Awaitable[None]]


def positional(sql: str) -> str:
    """`%(name)s` → `$n` for asyncpg (the same statement text otherwise)."""
    return re.sub(r"%\((\w+)\)s", lambda m: f"${NAMES.index(m.group(1)) + 1}", sql)


def params(n: int) -> dict[str, Any]:
    rows, deliveries = [], []
    for i in range(n):
        eid = uuid.uuid4().hex
        rows.append(
            {
                "ord": i,
                "tenant_id": "default",
                "scope": "bench",
                "key": f"bench:{eid}",
                "fingerprint": eid,
                "own_key": False,
                "id": eid,
                "source": "bench",
                "type": "page.viewed",
                "occurred_at": "2026-11-23T00:00:00.000000Z",
                "actor_id": "u1",
                "subject": None,
                "data": json.dumps({"url": "/a/b", "referrer": "/", "w": 1280, "h": 800}),
            }
        )
        deliveries.append({"ord": i, "destination": "hook", "delivery_id": f"msg_{eid}"})
    now = time.time()
    return {
        "rows": json.dumps(rows),
        "deliveries": json.dumps(deliveries),
        "now": now,
        "expires_at": now + 86400,
        "base": id_base(now),
    }


async def psycopg_commit(url: str) -> tuple[Commit, Callable[[], Awaitable[None]]]:
    conn = await psycopg.AsyncConnection.connect(url, prepare_threshold=0)

    async def commit(n: int) -> None:
        async with conn.transaction():
            await (await conn.execute(SQL, params(n))).fetchall()

    return commit, conn.close


async def asyncpg_commit(url: str) -> tuple[Commit, Callable[[], Awaitable[None]]]:
    import asyncpg

    conn = await asyncpg.connect(url)
    statement = await conn.prepare(positional(SQL))

    async def commit(n: int) -> None:
        p = params(n)
        async with conn.transaction():
            await statement.fetch(*(p[name] for name in NAMES))

    return commit, conn.close


DRIVERS = {"psycopg": psycopg_commit, "asyncpg": asyncpg_commit}


async def run_case(url: str, driver: str, conns: int, group: int, seconds: float) -> dict[str, Any]:
    opened = [await DRIVERS[driver](url) for _ in range(conns)]
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def loop(commit: Commit) -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await commit(group)
            latencies.append(time.perf_counter() - t0)

    await opened[0][0](group)  # warm: prepare, caches
    start = time.perf_counter()
    await asyncio.gather(*(loop(c) for c, _ in opened))
    elapsed = time.perf_counter() - start
    for _, close in opened:
        await close()
    latencies.sort()
    return {
        "events_per_s": len(latencies) * group / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--conns", type=int, default=16)
    parser.add_argument("--group", type=int, default=500)
    args = parser.parse_args()
    name = f"ingestd_driver_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        store = PostgresStore.from_url(url)
        await store.open()
        await store._ensure_days(int(time.time() // 86400))
        await store.close()
        cases = {"single": (1, 1), "concurrent": (args.conns, 1), "group": (1, args.group)}
        results: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for _ in range(args.rounds):
            for case, (conns, group) in cases.items():
                for driver in DRIVERS:
                    r = await run_case(url, driver, conns, group, args.seconds)
                    results.setdefault((case, driver), []).append(r)
        print("| case | driver | events/s (median of rounds) | P50 ms | P99 ms |")
        print("|---|---|---|---|---|")
        for (case, driver), rs in results.items():
            med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            print(
                f"| {case} | {driver} | {med['events_per_s']:,.0f} | "
                f"{med['p50_ms']:.2f} | {med['p99_ms']:.2f} |"
            )
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    asyncio.run(main())
