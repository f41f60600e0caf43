"""What every fault scenario shares: the scales, a Run (receiver, clients, figures, checks).

A scenario starts real processes, runs `ledger.Clients` against them, injects its fault,
waits until every stored event is delivered, and returns `Figures` reconciled from the
clients' log, the store and the receiver's log. The expectations beyond the counts are
named `checks`; a test asserts them, the long form records them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from ledger import Clients, Ledger
from pg_cluster import webhook_toml
from reconcile import Figures, Receiving, read_store, reconcile, until_delivered
from support import ServerProcess

CONTRADICTED = "no 503 said 'not stored' for a stored event"
FSYNC_CONTRADICTED = "after a failed fsync, no 503 said 'not stored' for a stored event"
READY_WHILE_FULL = "/ready says 503 while the disk is full"
HOOK = ("hook-a",)
"""The destinations of the single-process scenarios (the PostgreSQL ones use two)."""
PATIENT = "retry_schedule = [0, 0.5, 1, 1, 1, 2, 2, 2, 5, 5]"
ENOUGH_FOR_AN_OUTAGE = "retry_schedule = [0, 1, 2, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8]"
"""~110 s of retries: a receiver down 60 s is not dead-lettered."""


@dataclass(frozen=True)
class Scale:
    name: str
    serve_crashes: int
    uptime: tuple[float, float]
    """Seconds a killed process serves before the next kill (drawn uniformly)."""
    serve_events: int
    serve_rate: float
    pg_rounds: int
    stalls: int
    pg_stops: int
    pg_down: float
    redis_kills: int
    redis_down: float
    disk_full: float
    fsync_fail: float
    receiver_down: float
    rate: float
    """Events/s of the scenarios other than the serve kills."""
    deliver_within: float
    timeout: float
    """Seconds one scenario may take before pytest-timeout stops it."""
    warmup: float
    """Seconds of load before the first fault."""


QUICK = Scale(
    "quick",
    serve_crashes=2,
    uptime=(1.0, 2.0),
    serve_events=2_500,
    serve_rate=1000,
    pg_rounds=1,
    stalls=1,
    pg_stops=1,
    pg_down=2.0,
    redis_kills=1,
    redis_down=2.0,
    disk_full=3.0,
    fsync_fail=2.0,
    receiver_down=3.0,
    rate=300,
    deliver_within=90,
    timeout=180,
    warmup=1.0,
)
LONG = Scale(
    "long",
    serve_crashes=100,
    uptime=(2.0, 4.0),
    serve_events=200_000,
    serve_rate=1500,
    pg_rounds=8,
    stalls=5,
    pg_stops=3,
    pg_down=5.0,
    redis_kills=3,
    redis_down=5.0,
    disk_full=15.0,
    fsync_fail=10.0,
    receiver_down=60.0,
    rate=500,
    deliver_within=1200,
    timeout=3000,
    warmup=2.0,
)


def destinations_toml(receiving: Receiving, names: tuple[str, ...], schedule: str) -> str:
    return webhook_toml(receiving.receiver, names).replace(PATIENT, schedule)


def load_text(clients: Clients) -> str:
    rate = f"{clients.rate:.0f} ev/s" if clients.rate else "closed loop"
    return f"{clients.clients} clients, 1 + {clients.batch}-event batches, {rate}"


class Run:
    """One scenario's campaign: the receiver and its log, the clients and theirs, the figures."""

    def __init__(
        self, tmp: Path, scale: Scale, scenario: str, destinations: tuple[str, ...]
    ) -> None:
        self.scale = scale
        self.destinations = destinations
        self.receiving = Receiving()
        self.ledger = Ledger(tmp / "client.jsonl")
        self.figures = Figures(scenario, "")
        self.clients = Clients(self.ledger, [])
        self.sending: asyncio.Task[None] | None = None
        self.start = time.monotonic()

    def toml(self, schedule: str = PATIENT) -> str:
        return destinations_toml(self.receiving, self.destinations, schedule)

    def send(self, urls: list[str], rate: float, **options: int) -> Clients:
        """Start the clients on `urls`."""
        self.clients = Clients(self.ledger, urls, rate=rate, **options)
        self.figures.load = load_text(self.clients)
        self.sending = asyncio.create_task(self.clients.run())
        return self.clients

    def check(self, name: str, ok: bool) -> None:
        """Record a check that must hold every time it is made."""
        self.figures.checks[name] = self.figures.checks.get(name, True) and ok

    def answers_only(self, allowed: set[int]) -> None:
        """Every answer had one of these statuses (0: no answer)."""
        names = "/".join(str(s) for s in sorted(allowed - {0}))
        tail = ", or no answer" if 0 in allowed else ""
        self.check(f"only {names} answers{tail}", set(self.ledger.statuses) <= allowed)

    def between(self, start: float, end: float) -> list[int]:
        """The statuses answered between `start` and `end` (monotonic times)."""
        return [s for t, s, _ in self.ledger.timeline if start < t < end]

    def sent_between(self, start: float, end: float) -> list[int]:
        """The statuses of the attempts sent and answered between `start` and `end`."""
        return [s for t, s, sent in self.ledger.timeline if start < sent and t < end]

    async def settle(self, database_url: str) -> Figures:
        """Stop the clients (their last events answered), wait for delivery, reconcile."""
        f = self.figures
        self.clients.stop.set()
        assert self.sending is not None
        try:
            await asyncio.wait_for(asyncio.shield(self.sending), 60)
        except TimeoutError:
            self.clients.give_up.set()
            await self.sending
            f.notes.append("clients gave up on events still unanswered after 60 s")
        n = len(self.destinations)
        took = await until_delivered(database_url, n, self.scale.deliver_within, settle=1.0)
        self.check("every stored event delivered in time", took is not None)
        stored, deliveries = await asyncio.to_thread(read_store, database_url)
        self.ledger.close()
        reconcile(f, self.ledger, stored, deliveries, self.receiving, self.destinations)
        self.check("every event answered 202 or duplicate in the end", f.unanswered == 0)
        self.check(CONTRADICTED, f.contradicted == 0)
        return f


@contextlib.asynccontextmanager
async def campaign(
    tmp: Path, scale: Scale, scenario: str, destinations: tuple[str, ...] = HOOK
) -> AsyncIterator[Run]:
    run = Run(tmp, scale, scenario, destinations)
    await run.receiving.start()
    try:
        yield run
    finally:
        run.clients.stop.set()
        run.clients.give_up.set()
        if run.sending is not None:
            await asyncio.gather(run.sending, return_exceptions=True)
        run.ledger.close()
        await run.receiving.stop()
    run.figures.load += f", {run.figures.sent:,} events"
    run.figures.seconds = time.monotonic() - run.start


def process_alive(proc: ServerProcess) -> bool:
    return proc.proc is not None and proc.proc.poll() is None


async def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def wait_async(check: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def count_of(statuses: list[int]) -> dict[int, int]:
    return dict(sorted(Counter(statuses).items()))
