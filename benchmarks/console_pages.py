"""Console benchmark: every console page rendered by the server with 1,000,000 events and
100,000 dead letters in the store (target: <= 100 ms P95 each, both backends).

The store is filled through Store.accept (batches of 2,000 events, one webhook delivery
each, 3 types, 4 sources, 2 tenants), then the deliveries are settled with one UPDATE
(90 % succeeded, every 10th dead) — what a worker would have left, without running one
for an hour. 500 deliveries of an inbox destination stay waiting. The console runs in
this process as `ingestd api` does (IngestdApp, its lifespan, no keys: loopback) and is
called through httpx's ASGI transport, so a figure is the server's time to answer a
request and read its whole body, with no network or browser in it.

    python -m benchmarks.console_pages --backend sqlite,postgres --events 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks import backends
from ingestd.api.app import IngestdApp
from ingestd.config import load_settings
from ingestd.ingest.envelope import parse_event
from ingestd.routing import delivery_id
from ingestd.store import store_from_url
from ingestd.store.protocol import Routed

TYPES = ("order.placed", "order.paid", "invoice.created")
SOURCES = ("shop", "billing", "crm", "desk")
BATCH = 2000
SETTLE = """
UPDATE deliveries SET state = 'succeeded', attempts = 1, finished_at = run_at + 0.01,
       updated_at = run_at + 0.01, last_status = 200
WHERE destination = 'hook';
UPDATE deliveries SET state = 'dead', attempts = 8, last_status = 500,
       last_error = 'HTTP 500: receiver down (attempts exhausted: 8)'
WHERE destination = 'hook' AND id % 10 = 0;
"""


def config_file(workdir: Path) -> Path:
    path = workdir / "ingestd.toml"
    path.write_text(
        '[[destinations]]\nname = "hook"\nkind = "webhook"\nurl = "http://127.0.0.1:9/"\n'
        'secret = "whsec_' + "A" * 32 + '"\n\n'
        '[[destinations]]\nname = "pull"\nkind = "inbox"\nevent_types = ["ticket.*"]\n'
    )
    return path


async def fill(url: str, events: int) -> list[str]:
    """Events, their deliveries, settled; returns a sample of event ids to open."""
    store = store_from_url(url)
    await store.open()
    sample: list[str] = []
    started = time.monotonic()
    now = time.time() - events / 1000  # spread received_at over the recent past
    try:
        for base in range(0, events, BATCH):
            batch = []
            for n in range(base, min(base + BATCH, events)):
                sub = parse_event(
                    {
                        "source": SOURCES[n % len(SOURCES)],
                        "type": TYPES[n % len(TYPES)],
                        "id": f"ev-{n:07d}",
                        "data": {"n": n, "customer": f"c-{n % 977}", "total": n % 500},
                    },
                    tenant_id="default" if n % 50 else "acme",
                    received_at=now + n / 1000,
                )
                batch.append(Routed(sub, (("hook", delivery_id(sub.event, "hook")),)))
            await store.accept(batch, now + base / 1000)
            if base % 100_000 == 0:
                print(f"  {base:,} events ({time.monotonic() - started:.0f} s)", flush=True)
        tickets = []
        for n in range(500):
            sub = parse_event({"source": "desk", "type": "ticket.opened", "id": f"t-{n}"})
            tickets.append(Routed(sub, (("pull", delivery_id(sub.event, "pull")),)))
        await store.accept(tickets, time.time())
        rng = random.Random(7)
        sample = [f"ev-{rng.randrange(events):07d}" for _ in range(200)]
        sample = [s for s in sample if int(s[3:]) % 50]  # the default tenant's
    finally:
        await store.close()
    settle(url)
    print(f"  filled and settled in {time.monotonic() - started:.0f} s", flush=True)
    return sample


def settle(url: str) -> None:
    if url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.executescript(SETTLE + "ANALYZE;")
        conn.close()
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as pg:
        for statement in SETTLE.split(";"):
            if statement.strip():
                pg.execute(statement)
        pg.execute("VACUUM ANALYZE")  # what autovacuum does after such a change


def pages(sample: list[str], later_cursor: str | None) -> dict[str, str]:
    """Name → path of every console page measured."""
    found = {
        "overview": "/console",
        "overview live": "/console/live/overview",
        "events": "/console/events",
        "events by type": "/console/events?type=order.paid",
        "events by source": "/console/events?source=crm",
        "events by time": "/console/events?since=2020-01-01T00:00",
        "destinations": "/console/destinations",
        "destination": "/console/destinations/hook",
        "dead letters": "/console/dead",
        "dead by destination": "/console/dead?destination=hook",
        "dead by type": "/console/dead?event_type=order.paid",
        "inbox": "/console/inbox",
        "inbox peek": "/console/inbox/pull",
        "keys": "/console/keys",
    }
    if later_cursor:
        found["events, a later page"] = f"/console/events?cursor={later_cursor}"
    for n, event_id in enumerate(sample[:3]):
        found[f"event page {n + 1}"] = f"/console/events/{event_id}"
    return found


async def timed(client: httpx.AsyncClient, method: str, path: str, **kw: Any) -> float:
    started = time.perf_counter()
    answer = await client.request(method, path, **kw)
    elapsed = time.perf_counter() - started
    if answer.status_code != 200:
        raise RuntimeError(f"{method} {path}: {answer.status_code} {answer.text[:300]}")
    return elapsed


def summary(times: list[float]) -> tuple[float, float, float]:
    ordered = sorted(times)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return statistics.median(ordered) * 1000, p95 * 1000, ordered[-1] * 1000


async def measure(
    url: str, workdir: Path, sample: list[str], rounds: int
) -> list[tuple[str, float, float, float]]:
    os.environ.update(
        INGESTD_DATABASE_URL=url,
        INGESTD_CONFIG=str(config_file(workdir)),
        INGESTD_CONSOLE="true",
        INGESTD_WEBHOOK_ALLOW_NETS='["127.0.0.0/8"]',
    )
    app = IngestdApp(load_settings(), "api")
    await app.runtime.start()
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    rows = []
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            home = await client.get("/console/dead")  # a page with a form: its CSRF token
            csrf = re.search(r'name="csrf" value="([^"]+)"', home.text)
            cursor = None
            page = await client.get("/console/events")
            for _ in range(20):  # 20 pages back: 1,000 events older than the newest
                found = re.search(r'href="/console/events\?cursor=([^"&]+)"', page.text)
                if found is None:
                    break
                cursor = found.group(1)
                page = await client.get(f"/console/events?cursor={cursor}")
            targets = [("GET", name, path, {}) for name, path in pages(sample, cursor).items()]
            token = csrf.group(1) if csrf else ""
            for name, form in (
                ("dead: confirm replay of all 100k", {"all_matching": "yes"}),
                ("dead: confirm by destination", {"all_matching": "yes", "destination": "hook"}),
                ("dead: confirm by type", {"all_matching": "yes", "event_type": "order.paid"}),
            ):
                body = {"csrf": token, "operation": "replay", **form}
                targets.append(("POST", name, "/console/dead/confirm", {"data": body}))
            for method, name, path, kw in targets:
                for _ in range(3):
                    await timed(client, method, path, **kw)  # warm caches and templates
                times = [await timed(client, method, path, **kw) for _ in range(rounds)]
                p50, p95, worst = summary(times)
                rows.append((name, p50, p95, worst))
                print(
                    f"  {name:36s} P50 {p50:7.1f} ms  P95 {p95:7.1f} ms  max {worst:7.1f}",
                    flush=True,
                )
    finally:
        await app.runtime.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--backend", default="sqlite,postgres")
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=40, help="requests per page")
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ingestd-console-bench-"))
    print(
        f"# console pages, {args.events:,} events, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"# load average before: {os.getloadavg()}")
    results: dict[str, list[tuple[str, float, float, float]]] = {}
    for backend in args.backend.split(","):
        with backends.database(backend, workdir, f"console-{backend}") as url:
            print(f"## {backend}: filling", flush=True)
            sample = asyncio.run(fill(url, args.events))
            dead = backends.scalar(url, "SELECT count(*) FROM deliveries WHERE state = 'dead'")
            total = backends.scalar(url, "SELECT count(*) FROM events")
            print(f"## {backend}: {total:,} events, {dead:,} dead letters; load {os.getloadavg()}")
            results[backend] = asyncio.run(measure(url, workdir, sample, args.rounds))
    print(f"# load average after: {os.getloadavg()}")
    print("\n| page | " + " | ".join(f"{b} P50 / P95 ms" for b in results) + " |")
    print("|---|" + "---|" * len(results))
    names = [row[0] for row in next(iter(results.values()))]
    for i, name in enumerate(names):
        cells = [f"{rows[i][1]:.1f} / **{rows[i][2]:.1f}**" for rows in results.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")
    worst = max(row[2] for rows in results.values() for row in rows)
    print(f"\nworst P95: {worst:.1f} ms (target 100 ms)")
    return 0 if worst <= 100 else 1


if __name__ == "__main__":
    sys.exit(main())
