"""Assembly: settings → store, destinations, acceptor, worker, admin, and their lifecycle.

`serve` runs all of it in one process; `api` runs acceptance only (plus inline processing
in synchronous mode); `worker` runs the claim loop only. The runtime renders nothing:
the HTTP layer (api/) and the CLI turn what it returns into answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Literal

import msgspec

from ingestd.admin import Admin
from ingestd.catalog import Catalog
from ingestd.config import Settings
from ingestd.ingest.acceptor import Acceptor
from ingestd.model import AcceptOutcome, DeliveryState, StatusReport, Submission
from ingestd.obs.setup import configure_tracing
from ingestd.routing import PULL_KINDS, Directory
from ingestd.store import Store, store_from_url
from ingestd.store.protocol import Pruned
from ingestd.worker import RetryPolicy, Worker
from ingestd.worker.breaker import Breaker, BreakerPolicy

log = logging.getLogger("ingestd")
Role = Literal["serve", "api", "worker"]
PRUNE_EVERY = 600.0


class Runtime:
    """Everything one ingestd process runs."""

    def __init__(self, settings: Settings, role: Role = "serve") -> None:
        self.settings = settings
        self.role = role
        configure_tracing(settings)
        self.store: Store = store_from_url(
            settings.database_url,
            idempotency_ttl=settings.idempotency_ttl,
            synchronous=settings.sqlite_synchronous,
        )
        self.directory = Directory(lambda config: self.catalog.build(config))
        self._default_policy = RetryPolicy.from_schedule(
            settings.retry_schedule, settings.retry_jitter
        )
        self.acceptor = Acceptor(
            self.store,
            self.directory,
            max_pending=settings.max_pending,
            on_commit=self.directory.arrivals.committed,
        )
        self.catalog = Catalog(self.store, self.directory, settings, self.acceptor)
        self.directory.load(settings.destinations)
        self.breaker = Breaker(
            self.store,
            self.directory,
            breaker_defaults(settings),
            on_disable=self.catalog.disable_soon,
        )
        self.worker: Worker | None = None
        if role != "api" or not settings.async_ingestion:
            self.worker = Worker(
                self.store,
                self.directory,
                self.policy_for,
                gate=self.breaker,
                on_disable=self.catalog.disable_soon,
                concurrency=settings.worker_concurrency,
                batch=settings.worker_batch,
                lease=settings.lease_seconds,
                poll_interval=settings.poll_interval,
                attempt_body_bytes=settings.attempt_body_bytes if settings.attempt_log else None,
            )
        self.admin = Admin(self.store, settings, reload=self.catalog.refresh)
        self._tasks: list[asyncio.Task[None]] = []

    def policy_for(self, destination: str) -> RetryPolicy:
        route = self.directory.get(destination)
        if route is not None and route.config.retry_schedule:
            return RetryPolicy.from_schedule(
                route.config.retry_schedule, self.settings.retry_jitter
            )
        return self._default_policy

    async def start(self) -> None:
        await self.store.open()
        self.store.watch_arrivals(self.directory.arrivals.remote)
        self.acceptor.start()  # every role: disabling a destination emits an event
        await self.catalog.start()
        if self.worker is not None:
            if self.role != "api":
                self.breaker.start()
            self.worker.start(claim=self.role != "api")
        if self.role != "api":
            self._tasks.append(asyncio.create_task(self._prune_loop(), name="pruner"))

    async def stop(self) -> None:
        """Finish pending commits, let the worker finish or release, close the store."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.catalog.stop()
        if self.worker is not None:
            await self.worker.stop(self.settings.shutdown_grace)
            await self.breaker.stop()
        await self.acceptor.close()
        await self.directory.close()
        await self.store.close()

    async def prune(self) -> Pruned:
        s = self.settings
        return await self.store.prune(
            time.time(),
            retention=s.retention,
            dead_retention=s.dead_retention,
            idempotency_ttl=s.idempotency_ttl,
        )

    async def _prune_loop(self) -> None:
        while True:
            await asyncio.sleep(PRUNE_EVERY)
            try:
                pruned = await self.prune()
                log.info("pruned %s", pruned)
            except Exception as exc:
                log.warning("prune failed: %s", exc)

    async def process_now(
        self, items: list[tuple[Submission, AcceptOutcome]], timeout: float = 60.0
    ) -> list[Processed]:
        """Synchronous mode: run the deliveries of just-accepted events, wait for them (up
        to `timeout`), and report where each event stands."""
        assert self.worker is not None
        # Inbox deliveries wait for a consumer to pull them: run and wait for the rest only.
        pull = frozenset(d.name for d in self.directory.configs() if d.kind in PULL_KINDS)
        reports = [await self.store.status(sub.event.tenant_id, o.id) for sub, o in items]
        await self.worker.run_now(
            [d.id for r in reports if r for d in r.deliveries if d.destination not in pull]
        )
        processed: list[Processed] = []
        deadline = time.monotonic() + timeout
        for sub, outcome in items:
            while True:
                report = await self.store.status(sub.event.tenant_id, outcome.id)
                busy = report is not None and any(
                    d.state in (DeliveryState.PENDING, DeliveryState.RUNNING)
                    and d.destination not in pull
                    for d in report.deliveries
                )
                # Another worker may have claimed a job first: wait for its outcome.
                if not busy or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.01)
            processed.append(Processed(outcome.id, sub.idempotency_key, report, pull))
        return processed


class Processed(msgspec.Struct, frozen=True):
    """Where an event stands after synchronous processing."""

    id: str
    idempotency_key: str | None
    report: StatusReport | None
    """None only if the event vanished meanwhile (pruned, or another tenant's)."""
    pull: frozenset[str]
    """Destinations whose deliveries wait in an inbox for a consumer to pull them."""


def breaker_defaults(settings: Settings) -> BreakerPolicy:
    return BreakerPolicy(
        consecutive_failures=settings.breaker_consecutive_failures,
        failure_rate=settings.breaker_failure_rate,
        window=settings.breaker_window,
        min_calls=settings.breaker_min_calls,
        cooldown=settings.breaker_cooldown,
        disable_after=settings.disable_after,
    )
