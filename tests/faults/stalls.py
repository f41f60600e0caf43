"""A worker SIGSTOPped past its lease while it holds jobs (PostgreSQL): the promise judged is
that its leases are taken over by the other worker within a bound, while it is still stopped.

Each stop follows the leases the stalled worker held (read from the store, first while it is
stopped and then on every poll) to their fate. A lease ends in one of two ways while its
worker is stopped: taken over, when another worker's claim rescued it after it ran out (the
row's `interrupted` count grew), or finished by the stalled worker's own outcome, a
statement it had sent just before the stop. Only the first tests the promise, so a stop
whose leases all ended the second way judges nothing and the worker is stopped again."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from campaign import Scale, campaign, process_alive
from pg_cluster import Cluster, running, until_leased_by
from reconcile import Figures
from support import ServerProcess

LEASE = 1.5
TAKEN_WITHIN = 15.0
"""Seconds from the stop by which no lease may still be the stalled worker's."""
STOPPED_FOR = 3 * LEASE
"""The shortest stop: three leases, and longer until its leases are taken over."""
TRIES = 5
"""Stops of one stall until one catches a lease that only a takeover can end."""
TAKEN_OVER = f"the other worker took over the stalled one's leases within {TAKEN_WITHIN:g} s"


@dataclass
class Stall:
    """One stop of a worker and what became of the leases it held."""

    held: int
    taken_over: int
    """Ended by another worker's claim once the lease ran out."""
    finished: int
    """Ended by the stalled worker's own outcome, sent before the stop."""
    left: int
    """Still the stalled worker's at the bound."""
    locked: int
    """Of those, row-locked by a transaction still open (the stalled worker's, stopped)."""
    seconds: float | None
    """From the stop until none was left (None: not within the bound)."""

    def text(self) -> str:
        took = f"in {self.seconds:.2f} s" if self.seconds is not None else "NOT all taken"
        return (
            f"{self.held} leases held: {self.taken_over} taken over, {self.finished} finished "
            f"by its own last outcome, {self.left} left ({self.locked} row-locked), {took}"
        )


def leased_by(pg_url: str, pid: int) -> dict[int, int]:
    """Delivery id -> `interrupted` of the deliveries leased by worker process `pid`."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id, interrupted FROM deliveries WHERE state = 'running' "
            "AND lease_owner LIKE %s",
            (f"%:{pid}:%",),
        ).fetchall()
    return dict(rows)


def locked_of(pg_url: str, ids: list[int]) -> int:
    """How many of these rows a transaction holds locked (no claim can take them)."""
    with psycopg.connect(pg_url) as conn:
        free = conn.execute(
            "SELECT id FROM deliveries WHERE id = ANY(%s) FOR UPDATE SKIP LOCKED", (ids,)
        ).fetchall()
        conn.rollback()
    return len(ids) - len(free)


def interrupted_of(pg_url: str, ids: list[int]) -> dict[int, int]:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT id, interrupted FROM deliveries WHERE id = ANY(%s)", (ids,)
        ).fetchall()
    return dict(rows)


async def stop_once(pg_url: str, worker: ServerProcess) -> Stall:
    """SIGSTOP `worker` while it holds leases; SIGCONT once they are taken over (or the
    bound passed), after three leases at least."""
    pid = worker.pid
    await until_leased_by(pg_url, pid)
    worker.signal(signal.SIGSTOP)
    stopped = time.monotonic()
    held: dict[int, int] = {}
    seconds = None
    try:
        while time.monotonic() - stopped < TAKEN_WITHIN:
            now_held = await asyncio.to_thread(leased_by, pg_url, pid)
            for job, interrupted in now_held.items():
                held.setdefault(job, interrupted)  # an outcome or claim it sent still counts
            if not now_held:
                seconds = time.monotonic() - stopped
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(max(0.0, stopped + STOPPED_FOR - time.monotonic()))
        fate = await asyncio.to_thread(interrupted_of, pg_url, list(held))
        left = await asyncio.to_thread(leased_by, pg_url, pid)
        locked = await asyncio.to_thread(locked_of, pg_url, list(left)) if left else 0
    finally:
        worker.signal(signal.SIGCONT)
    taken = sum(1 for job, before in held.items() if fate.get(job, before) > before)
    still = len(set(left) & set(held))
    return Stall(len(held), taken, len(held) - taken - still, len(left), locked, seconds)


async def worker_stalls(tmp: Path, pg_url: str, scale: Scale) -> Figures:
    title = f"a worker SIGSTOPped for 3 leases ({LEASE:g} s) while it holds jobs (PostgreSQL)"
    async with campaign(tmp, scale, title) as run:
        cluster = Cluster(
            tmp, pg_url, run.toml(), apis=1, workers=2, INGESTD_LEASE_SECONDS=str(LEASE)
        )
        async with running(cluster):
            run.send(cluster.urls, scale.rate)
            for _ in range(scale.stalls):
                for _ in range(TRIES):
                    await asyncio.sleep(LEASE)
                    stall = await stop_once(pg_url, random.choice(cluster.workers))
                    run.figures.faults += 1
                    run.figures.notes.append(f"stop {run.figures.faults}: {stall.text()}")
                    if stall.taken_over or stall.left:
                        break  # a takeover was due: this stop judges the promise
                ok = stall.taken_over > 0 and stall.left == 0 and stall.seconds is not None
                run.check(TAKEN_OVER, ok)
                if ok and stall.seconds is not None:
                    run.figures.recover_s.append(stall.seconds)
            await run.settle(pg_url)
            run.check("the stalled workers lived on", all(map(process_alive, cluster.workers)))
        run.figures.notes.append(
            "recovery: SIGSTOP to no lease left to the stalled worker; a stop whose leases "
            "all ended by its own last outcome judges nothing, and it is stopped again"
        )
        return run.figures
