"""The Store protocol: what the core needs from a backend (SQLite, PostgreSQL, ...).

One call is one transaction. Every method is owner- and tenant-aware so that a worker
that lost its lease cannot finish a job, and tenants never see each other's rows.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import msgspec

from ingestd.model import AcceptOutcome, Event, Job, StatusReport, Submission


class Routed(msgspec.Struct, frozen=True):
    """A submission with the destinations that subscribe to it."""

    submission: Submission
    destinations: tuple[tuple[str, str], ...]
    """(destination name, delivery id) pairs; the delivery id is stable for replays."""


class Verdict(enum.StrEnum):
    """What a finished attempt decided for its job."""

    SUCCEEDED = "succeeded"
    """Delivered; the job is done."""
    RETRY = "retry"
    """Failed; run again at `run_at` (the attempt counts)."""
    DEFER = "defer"
    """Not attempted (breaker open, destination busy); run at `run_at`, attempt refunded."""
    DEAD = "dead"
    """Failed for good; into the dead-letter queue."""


class JobResult(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one attempt, written back by the worker that held the lease."""

    job_id: int
    verdict: Verdict
    run_at: float | None = None
    error: str | None = None
    status_code: int | None = None


class EventQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A filter over stored events, in acceptance order."""

    tenant_id: str = "default"
    source: str | None = None
    type: str | None = None
    since: str | None = None
    """occurred_at >= since (RFC 3339, UTC-normalized)."""
    until: str | None = None
    """occurred_at < until."""
    after: int = 0
    """Cursor: the sequence number of the last event of the previous page."""
    limit: int = 100


class EventPage(msgspec.Struct, frozen=True):
    events: list[Event]
    next_after: int | None


class Depth(msgspec.Struct, frozen=True):
    """How much work is waiting: `ingestd drain` waits for pending + running + failed == 0."""

    pending: int
    running: int
    failed: int
    dead: int

    @property
    def backlog(self) -> int:
        return self.pending + self.running + self.failed


class Pruned(msgspec.Struct, frozen=True):
    events: int
    dead: int
    keys: int


@runtime_checkable
class Store(Protocol):
    """A durable event log and job queue."""

    async def open(self) -> None:
        """Connect and apply migrations (refusing a schema newer than the code)."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""

    async def accept(self, batch: Sequence[Routed], now: float) -> list[AcceptOutcome]:
        """Store new events, their idempotency keys and delivery jobs in one transaction."""

    async def claim(
        self,
        worker_id: str,
        limit: int,
        lease: float,
        now: float,
        *,
        job_ids: Sequence[int] | None = None,
        exclude: Sequence[str] = (),
    ) -> list[Job]:
        """Lease up to `limit` due jobs (or exactly `job_ids`), expired leases included."""

    async def extend(self, worker_id: str, job_ids: Sequence[int], until: float) -> int:
        """Push the lease of jobs this worker still holds; returns how many it holds."""

    async def finish(self, worker_id: str, results: Sequence[JobResult], now: float) -> int:
        """Record outcomes of jobs this worker holds; a lost lease changes nothing."""

    async def release(self, worker_id: str, job_ids: Sequence[int], now: float) -> None:
        """Give back leased jobs without spending their attempt (graceful stop)."""

    async def status(self, tenant_id: str, event_id: str) -> StatusReport | None: ...

    async def events(self, query: EventQuery) -> EventPage: ...

    async def depth(self) -> Depth: ...

    async def prune(
        self, now: float, *, retention: float, dead_retention: float, idempotency_ttl: float
    ) -> Pruned:
        """Drop finished events older than the retention, dead ones after theirs, old keys."""

    async def wait_for_work(self, timeout: float) -> None:
        """Return when new jobs may be due (or after `timeout`)."""
