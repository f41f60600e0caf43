"""The Store protocol: what the core needs from a backend (SQLite, PostgreSQL, ...), and the
roles it is made of (EventLog, JobQueue, DestinationStore, BreakerStore, DeadLetterStore,
InboxStore, Inspection), so that each consumer names only the methods it uses.

One call is one transaction. Every method is owner- and tenant-aware so that a worker
that lost its lease cannot finish a job, and tenants never see each other's rows.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import msgspec

from ingestd.keys import StoredKey
from ingestd.model import (
    AcceptOutcome,
    AttemptRecord,
    DeliveryRecord,
    Event,
    Job,
    StatusReport,
    Submission,
)

ArrivalCallback = Callable[[Sequence[str] | None], None]
"""Told which destinations just got jobs from another process (None: it is not known)."""


class Routed(msgspec.Struct, frozen=True):
    """A submission with the destinations that subscribe to it."""

    submission: Submission
    destinations: tuple[tuple[str, str], ...]
    """(destination name, delivery id) pairs; the delivery id is stable for replays."""


def given_jobs(batch: Sequence[Routed], outcomes: Sequence[AcceptOutcome]) -> set[str]:
    """The destinations an accepted group gave delivery jobs to."""
    return {
        name
        for routed, outcome in zip(batch, outcomes, strict=True)
        if outcome.delivery_ids
        for name, _ in routed.destinations
    }


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
    attempt: AttemptRecord | None = None
    """The attempt log's entry, written in the same transaction when the lease still holds
    (None: not attempted — a deferral — or the attempt log is off)."""


class EventQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A filter over stored events, in acceptance order."""

    tenant_id: str = "default"
    source: str | None = None
    type: str | None = None
    since: str | None = None
    """occurred_at >= since (RFC 3339, UTC-normalized)."""
    until: str | None = None
    """occurred_at < until."""
    cursor: str | None = None
    """`next_cursor` of the previous page; opaque, each backend spells its own."""
    limit: int = 100
    newest_first: bool = False
    """Walk back from the newest event (the console). Paging then follows commit order on
    SQLite; on PostgreSQL an event committed while paging, by a transaction older than the
    cursor, lands on a page already read (the oldest-first walk never skips one)."""


class EventPage(msgspec.Struct, frozen=True):
    """A page of events. Paging never skips an event: a backend whose commits can land out
    of sequence order (several processes on PostgreSQL) pages only over settled events."""

    events: list[Event]
    next_cursor: str | None


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


class BreakerState(enum.StrEnum):
    """A destination's circuit breaker, as every worker sees it."""

    CLOSED = "closed"
    """Deliveries flow."""
    OPEN = "open"
    """Deliveries wait (attempts refunded) until `breaker_until`."""
    HALF_OPEN = "half_open"
    """One worker holds the probe until `breaker_until`; the others still wait."""


class DestinationRow(msgspec.Struct, frozen=True, kw_only=True):
    """A stored destination: its configuration and its health."""

    tenant_id: str
    name: str
    config: dict[str, Any]
    """The DestinationConfig as JSON (name, kind, filters, kind-specific options)."""
    enabled: bool
    disabled_reason: str | None
    breaker_state: BreakerState
    breaker_until: float | None
    failing_since: float | None
    """Start of the current run of failures (None when the last outcome was a success)."""
    created_at: float
    updated_at: float
    disabled_at: float | None = None
    """When it was last disabled (None while enabled)."""


class DeadLetterQuery(msgspec.Struct, frozen=True, kw_only=True):
    """A filter over dead deliveries, in delivery-row order."""

    tenant_id: str = "default"
    ids: tuple[str, ...] | None = None
    """Delivery ids (webhook-id, `msg_...`)."""
    destination: str | None = None
    event_type: str | None = None
    since: float | None = None
    """Died at (finished_at) >= since, Unix seconds."""
    until: float | None = None
    after: int = 0
    """Cursor: the delivery row id of the last item of the previous page."""
    limit: int = 100


class DeadLetter(msgspec.Struct, frozen=True):
    delivery: DeliveryRecord
    event: Event


class DeliveryView(msgspec.Struct, frozen=True):
    """One delivery whole: its state, its attempt log (`delivery.log`) and its event."""

    delivery: DeliveryRecord
    event: Event


class DeadLetterPage(msgspec.Struct, frozen=True):
    items: list[DeadLetter]
    next_after: int | None


class DestinationBacklog(msgspec.Struct, frozen=True, kw_only=True):
    """What waits for one destination, read from the store (every process's work)."""

    destination: str
    pending: int = 0
    running: int = 0
    failed: int = 0
    dead: int = 0
    oldest_due: float | None = None
    """The earliest `run_at` of its waiting deliveries: now minus this is its lag."""
    oldest_created: float | None = None
    """`created_at` of its oldest pending, running or failed delivery: now minus this is
    how long its oldest undelivered event has waited (retries included; the metrics' lag)."""

    @property
    def waiting(self) -> int:
        return self.pending + self.running + self.failed


class Inspection(Protocol):
    """Reads an operator's console needs, each served by an existing index."""

    async def destination_backlog(
        self, tenant_id: str | None, *, dead_cap: int | None = None
    ) -> list[DestinationBacklog]:
        """Waiting and dead deliveries by destination (None: every tenant's). With
        `dead_cap`, dead letters are counted up to that bound per stored destination (a
        page answers in bounded time with 100,000 of them); 0 counts none."""

    async def count_dead(self, query: DeadLetterQuery) -> int:
        """How many dead deliveries a replay or purge of `query` would touch, counting at
        most `query.limit` of them."""

    async def peek_inbox(self, tenant_id: str, destination: str, limit: int) -> list[DeadLetter]:
        """The oldest waiting deliveries of a pull destination, leasing nothing."""

    async def idempotency_key_of(self, event: Event) -> str | None:
        """The idempotency key an event was accepted under, while it is kept (None: it had
        none, or it expired)."""


# -- roles: each consumer is typed with the few methods it uses --------------------------


class EventLog(Protocol):
    """Where accepted events are written and read back (the acceptor, status, GET /events)."""

    async def accept(self, batch: Sequence[Routed], now: float) -> list[AcceptOutcome]:
        """Store new events, their idempotency keys and delivery jobs in one transaction."""

    async def status(self, tenant_id: str, event_id: str) -> StatusReport | None:
        """The event and each delivery, with its attempt log (`DeliveryRecord.log`)."""

    async def events(self, query: EventQuery) -> EventPage: ...

    async def delivery(self, tenant_id: str, delivery_id: str) -> DeliveryView | None:
        """One delivery (by its id, `msg_...`) with its attempt log and event."""


class JobQueue(Protocol):
    """Delivery jobs: leased, extended, finished or given back (the worker)."""

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
        """Lease up to `limit` due jobs (or exactly `job_ids`). Jobs whose lease ran out
        are swept back first, at most every lease/3 seconds per process
        (store/leases.py), not on every claim."""

    async def extend(self, worker_id: str, job_ids: Sequence[int], until: float) -> int:
        """Push the lease of jobs this worker still holds; returns how many it holds."""

    async def finish(self, worker_id: str, results: Sequence[JobResult], now: float) -> int:
        """Record outcomes of jobs this worker holds; a lost lease changes nothing."""

    async def release(self, worker_id: str, job_ids: Sequence[int], now: float) -> None:
        """Give back leased jobs without spending their attempt (graceful stop)."""

    async def wait_for_work(self, timeout: float) -> None:
        """Return when new jobs may be due (or after `timeout`)."""

    async def depth(self) -> Depth: ...


class DestinationStore(Protocol):
    """Destinations as stored, with a version that moves on every change (the catalog)."""

    async def catalog_version(self) -> int:
        """A counter that moves on every destination change (processes reload on change)."""

    async def list_destinations(self, tenant_id: str = "default") -> list[DestinationRow]: ...

    async def get_destination(self, tenant_id: str, name: str) -> DestinationRow | None: ...

    async def sync_destinations(
        self, tenant_id: str, configs: Sequence[dict[str, Any]], now: float
    ) -> list[str]:
        """Seed from the config file: insert new ones, re-apply an entry whose file text
        changed since it was last seeded, delete seeded ones the file no longer has.
        Returns the names inserted or re-applied (the file's word on them is news)."""

    async def create_destination(
        self, tenant_id: str, name: str, config: dict[str, Any], now: float
    ) -> bool:
        """False when the name is taken."""

    async def update_destination(
        self,
        tenant_id: str,
        name: str,
        config: dict[str, Any],
        now: float,
        *,
        enabled: bool | None = None,
    ) -> bool:
        """Replace the config; enabled=True also clears disable reason, breaker, failing."""

    async def delete_destination(self, tenant_id: str, name: str, now: float) -> bool:
        """Remove it; its unfinished deliveries become dead ('destination deleted'). The
        default tenant's destinations take every tenant's events: all their deliveries."""

    async def disable_destination(self, tenant_id: str, name: str, reason: str, now: float) -> bool:
        """True only for the call that flipped it from enabled to disabled."""


class BreakerStore(Protocol):
    """Each destination's circuit breaker, shared by every worker (the breaker)."""

    async def trip_breaker(self, tenant_id: str, name: str, until: float, now: float) -> None:
        """Open until `until`; failing_since starts now unless already set."""

    async def take_probe(self, tenant_id: str, name: str, lease: float, now: float) -> bool:
        """Open (or half-open with an expired probe) and due → half-open, this caller probes."""

    async def close_breaker(self, tenant_id: str, name: str, now: float) -> None:
        """Closed, failing_since cleared."""

    async def mark_failing(self, tenant_id: str, name: str, now: float) -> float | None:
        """failing_since = its value or now; returns it (None if no such destination)."""

    async def list_destinations(self, tenant_id: str = "default") -> list[DestinationRow]:
        """Every destination with its breaker state (the breaker's sync loop)."""


class DeadLetterStore(Protocol):
    """The dead-letter queue: listed, replayed, purged (the admin service)."""

    async def dead_letters(self, query: DeadLetterQuery) -> DeadLetterPage: ...

    async def replay_dead(self, query: DeadLetterQuery, now: float) -> int:
        """Matching dead deliveries → pending, attempts 0, due now (same delivery id)."""

    async def purge_dead(self, query: DeadLetterQuery) -> int:
        """Delete matching dead deliveries."""


class KeyStore(Protocol):
    """API keys kept in the store (the plaintext never is): the keys admin routes and
    CLI, and each API process's KeyWatcher."""

    async def create_api_key(self, key: StoredKey) -> None: ...

    async def api_keys(self, tenant_id: str | None = None) -> list[StoredKey]:
        """Every stored key (revoked and expired ones too), oldest first; one tenant's."""

    async def revoke_api_key(self, key_id: str, now: float, tenant_id: str | None = None) -> bool:
        """True only for the call that revoked it (None: any tenant's)."""

    async def api_key_version(self) -> int:
        """Moves on every create and revoke: processes reload their keys when it does."""

    async def touch_api_keys(self, used: Mapping[str, float]) -> None:
        """Record when keys were last used (key id → time; only ever moves forward)."""


class InboxStore(Protocol):
    """Pull destinations' deliveries, leased and acknowledged by consumers (GET /inbox)."""

    async def lease_inbox(
        self, tenant_id: str, destination: str, limit: int, visibility: float, now: float
    ) -> list[Job]:
        """Lease due (or lease-expired) deliveries of a pull destination, oldest first."""

    async def ack_inbox(
        self, tenant_id: str, destination: str, delivery_ids: Sequence[str], now: float
    ) -> int:
        """Mark these deliveries succeeded; returns how many were still open."""


class AdminStore(DestinationStore, DeadLetterStore, Protocol):
    """What the admin service changes: destinations and dead letters (and the status of
    an event, to find its dead deliveries)."""

    async def status(self, tenant_id: str, event_id: str) -> StatusReport | None: ...


@runtime_checkable
class Store(
    EventLog,
    JobQueue,
    DestinationStore,
    BreakerStore,
    DeadLetterStore,
    InboxStore,
    Inspection,
    KeyStore,
    Protocol,
):
    """A durable event log and job queue: every role, plus the lifecycle of the backend."""

    async def open(self) -> None:
        """Connect and apply migrations (refusing a schema newer than the code)."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""

    async def probe_commit(self) -> None:
        """Commit a small write that reaches the disk (readiness: a 202 is possible now);
        StoreUnavailable if it cannot (disk full, fsync failing, read-only, no primary)."""

    async def prune(
        self, now: float, *, retention: float, dead_retention: float, idempotency_ttl: float
    ) -> Pruned:
        """Drop finished events older than the retention, dead ones after theirs, old keys."""

    def watch_arrivals(self, callback: ArrivalCallback) -> None:
        """Call `callback(destinations)` when another process commits jobs for them (None:
        for any destination). A backend used by one process at a time does nothing: that
        process's own commits are seen by its acceptor."""
