"""Fault scenarios that kill or stop processes: serve, API and worker processes, PostgreSQL
stopped, Redis killed (QUICK or LONG scale); a worker stalled past its lease is stalls.py."""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import subprocess
import time
from pathlib import Path

from campaign import (
    Scale,
    campaign,
    count_of,
    process_alive,
    wait_until,
)
from ledger import Clients
from pg_cluster import Cluster, running
from receivers import start_ingestd
from reconcile import Figures
from support import pg_ctl


def every(scale: Scale) -> str:
    return f"{scale.uptime[0]:g}-{scale.uptime[1]:g}"


# -- kill -9 of `ingestd serve` every few seconds (SQLite) ---------------------------------


async def serve_kills(tmp: Path, scale: Scale) -> Figures:
    title = f"kill -9 of serve every {every(scale)} s (SQLite)"
    async with campaign(tmp, scale, title) as run:
        server = await start_ingestd(tmp, run.toml(), INGESTD_LEASE_SECONDS="1")
        try:
            clients = run.send([server.url], scale.serve_rate, cut_short=50, batch=50)
            clients.at_least = scale.serve_events
            ledger = run.ledger
            for _ in range(scale.serve_crashes):
                await asyncio.sleep(random.uniform(*scale.uptime))
                await busy(clients)
                killed = time.monotonic()
                server.kill()
                run.figures.faults += 1
                await server.start(timeout=60)
                await wait_until(lambda k=killed: ledger.first(202, after=k) is not None, 30)
                run.figures.recover_s.append((ledger.first(202, after=killed) or killed) - killed)
            await run.settle(server.database_url)
        finally:
            await server.stop()
        run.answers_only({0, 200, 202, 207})
        run.figures.notes.append("recovery: kill to the first 202 (the restart included)")
        return run.figures


async def busy(clients: Clients, requests: int = 3, within: float = 2.0) -> None:
    """Wait (at most `within` s) until `requests` requests are in flight, so that the kill
    that follows cuts some off: at the quick form's few kills and low rate a kill at a
    random moment often found nothing in flight, and then tested no cut-off request."""
    deadline = time.monotonic() + within
    while clients.in_flight < requests and time.monotonic() < deadline:
        await asyncio.sleep(0.001)


# -- PostgreSQL: API and worker processes killed, a worker stalled, the server stopped -----


async def pg_kills(tmp: Path, pg_url: str, scale: Scale) -> Figures:
    title = f"kill -9 of an API and a worker process every {every(scale)} s (PostgreSQL, 2 + 2)"
    async with campaign(tmp, scale, title, ("hook-a", "hook-b")) as run:
        cluster = Cluster(tmp, pg_url, run.toml(), apis=2, workers=2, INGESTD_LEASE_SECONDS="2")
        async with running(cluster):
            run.send(cluster.urls, scale.rate)
            for _ in range(scale.pg_rounds):
                await asyncio.sleep(random.uniform(*scale.uptime))
                api, worker = random.choice(cluster.apis), random.choice(cluster.workers)
                killed = time.monotonic()
                api.kill()
                worker.kill()
                run.figures.faults += 2
                await asyncio.sleep(0.5)
                await asyncio.gather(cluster.restart(api), cluster.restart(worker))
                run.figures.recover_s.append(time.monotonic() - killed)
            await run.settle(pg_url)
        run.figures.notes.append("recovery: kill to both processes restarted and ready")
        return run.figures


async def pg_stops(tmp: Path, pg_url: str, scale: Scale) -> Figures:
    """PostgreSQL `stop -m immediate` under load, then started again (always, in finally)."""
    title = f"PostgreSQL stopped -m immediate for {scale.pg_down:.0f} s (2 APIs, 1 worker)"
    async with campaign(tmp, scale, title) as run:
        cluster = Cluster(tmp, pg_url, run.toml(), apis=2, workers=1, INGESTD_LEASE_SECONDS="2")
        async with running(cluster):
            clients = run.send(cluster.urls, scale.rate)
            for _ in range(scale.pg_stops):
                await asyncio.sleep(scale.warmup)
                try:
                    await asyncio.to_thread(pg_ctl, "stop")
                    run.figures.faults += 1
                    await asyncio.sleep(scale.pg_down)
                finally:
                    await asyncio.to_thread(pg_ctl, "start")
                started = time.monotonic()
                for url in cluster.urls:
                    await wait_until(
                        lambda u=url, t=started: clients.first_for(u, 202, t) is not None, 15
                    )
                firsts = [clients.first_for(u, 202, started) for u in cluster.urls]
                recovery = max((t or math.inf) for t in firsts) - started
                run.check("every API process answered 202 within 5 s", recovery < 5.0)
                run.figures.recover_s.append(min(recovery, 15.0))
            slowest_503 = clients.slowest(503)
            await run.settle(pg_url)
            run.check("no process exited", all(map(process_alive, cluster.apis + cluster.workers)))
        run.answers_only({0, 202, 207, 503})
        run.check("every 503 has Retry-After and a detail", clients.bad_503 == 0)
        run.check("every 503 answered within 2 s", slowest_503 < 2.0)
        run.figures.notes.append(
            f"recovery: PostgreSQL started to a 202 from every API; slowest 503 {slowest_503:.2f} s"
        )
        return run.figures


# -- Redis killed while it holds the shared rate limits ------------------------------------

REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1",
    "--port", "6379", "--save", "", "--appendonly", "no",
]  # fmt: skip
"""The restart command of DESIGN.md."""


def redis_pid() -> int:
    out = subprocess.run(
        ["redis-cli", "-p", "6379", "info", "server"],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout  # fmt: skip
    return int(next(ln for ln in out.splitlines() if ln.startswith("process_id:")).split(":")[1])


def redis_start() -> None:
    subprocess.run(REDIS_START, check=True, capture_output=True, timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done = subprocess.run(["redis-cli", "-p", "6379", "ping"], capture_output=True, text=True)
        if done.stdout.strip() == "PONG":
            return
        time.sleep(0.05)
    raise RuntimeError("redis-server did not answer PING after its restart")


async def redis_kills(tmp: Path, pg_url: str, scale: Scale, fail: str = "open") -> Figures:
    limit = scale.rate * 0.6
    title = (
        f"Redis killed -9 for {scale.redis_down:.0f} s while it holds the shared limit "
        f"(2 APIs, limit {limit:.0f} ev/s, fail {fail})"
    )
    async with campaign(tmp, scale, title) as run:
        cluster = Cluster(
            tmp, pg_url, run.toml(), apis=2, workers=1,
            INGESTD_RATE_LIMIT=str(limit), INGESTD_RATE_LIMIT_BURST="50",
            INGESTD_RATE_LIMIT_URL="redis://127.0.0.1:6379/15",
            INGESTD_RATE_LIMIT_PREFIX=f"ingestd-faults:{os.getpid()}:{time.time_ns()}:",
            INGESTD_RATE_LIMIT_FAIL=fail,
        )  # fmt: skip
        ledger = run.ledger
        during: list[int] = []
        async with running(cluster):
            run.send(cluster.urls, scale.rate)
            for _ in range(scale.redis_kills):
                await asyncio.sleep(scale.warmup)
                run.check("the limit held before the kill", 429 in run.between(0, math.inf))
                try:
                    os.kill(redis_pid(), signal.SIGKILL)
                    killed = time.monotonic()
                    run.figures.faults += 1
                    await asyncio.sleep(scale.redis_down)
                finally:
                    await asyncio.to_thread(redis_start)
                restarted = time.monotonic()
                during += run.between(killed + 0.2, restarted)
                shared = await wait_until(
                    lambda r=restarted: ledger.first(429, after=r) is not None, 15
                )
                run.check("the shared limit came back (429s again)", shared)
                run.figures.recover_s.append((ledger.first(429, after=restarted) or 0) - restarted)
            await run.settle(pg_url)
        allowed = {202, 207} if fail == "open" else {503}
        run.check(
            f"during the outage only {sorted(allowed)} or 429 (sent before)",
            set(during) - {429} <= allowed,
        )
        run.answers_only({202, 207, 429, 503})
        run.figures.notes.append(
            f"answers during the outage: {count_of(during)}; "
            "recovery: Redis restarted to the first 429 (the shared limit enforced again)"
        )
        return run.figures
