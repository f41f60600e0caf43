"""The event envelope, delivery jobs and the outcomes the core hands around."""

from __future__ import annotations

import enum
from typing import Any

import msgspec

DEFAULT_TENANT = "default"
"""The tenant of every request when no API key is configured, and the operator's tenant
(the one that owns destinations)."""


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One accepted event, as stored: the system of record."""

    id: str
    source: str
    type: str | None
    occurred_at: str
    data: dict[str, Any]
    actor_id: str | None = None
    subject: str | None = None
    tenant_id: str = "default"
    received_at: float = 0.0
    trace: str | None = None
    """W3C trace context of the ingest request: `traceparent`, then ` tracestate` if any."""


class Submission(msgspec.Struct, frozen=True, kw_only=True):
    """An event on its way into the store, with what idempotency needs."""

    event: Event
    idempotency_key: str | None
    """None when the client gave neither a key nor an id: nothing to deduplicate on."""
    scope: str
    fingerprint: bytes
    client_id: bool
    """True when the client named the event id (then the id itself must be unique)."""
    key_is_id: bool = False
    """The key is `source:id`, taken from the event's own id: the unique (tenant_id, id)
    index holds it, with the fingerprint beside it (SQLite: the event's row; PostgreSQL:
    its event_ids row), so no idempotency_keys row is written (that table keeps explicit
    and derived keys)."""


class OutcomeKind(enum.StrEnum):
    """What acceptance did with one submission."""

    ACCEPTED = "accepted"
    """Stored now; a 202."""
    DUPLICATE = "duplicate"
    """The key was seen with the same payload; the original id is returned."""
    MISMATCH = "mismatch"
    """The key was seen with another payload; a 422."""
    ID_CONFLICT = "id_conflict"
    """The event id is taken by an event with another key; a 409."""


class AcceptOutcome(msgspec.Struct, frozen=True):
    """The store's answer for one submission."""

    kind: OutcomeKind
    id: str
    delivery_ids: tuple[int, ...] = ()


class DeliveryState(enum.StrEnum):
    """Where one (event, destination) job stands."""

    PENDING = "pending"
    """Waiting for its first attempt."""
    RUNNING = "running"
    """Leased by a worker."""
    FAILED = "failed"
    """Failed at least once; another attempt is scheduled."""
    SUCCEEDED = "succeeded"
    """Delivered."""
    DEAD = "dead"
    """Attempts exhausted or permanently refused; in the dead-letter queue."""


class EventStatus(enum.StrEnum):
    """An event's processing status, derived from its deliveries."""

    PENDING = "pending"
    """Stored; no delivery has started."""
    PROCESSING = "processing"
    """At least one delivery is running or still to run after others finished."""
    COMPLETED = "completed"
    """Every delivery succeeded (or no destination subscribes)."""
    FAILED = "failed"
    """A delivery failed and will be retried."""
    DEAD = "dead"
    """Everything finished and at least one delivery is dead."""


class Job(msgspec.Struct, frozen=True, kw_only=True):
    """A claimed delivery: one event for one destination, leased to a worker."""

    id: int
    delivery_id: str
    """Stable across retries and replays: the receiver's dedup key (webhook-id)."""
    destination: str
    attempt: int
    event: Event
    interrupted: int = 0
    """Times a lease on it ran out without an outcome (its worker died or stalled)."""


class AttemptRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One delivery attempt as the attempt log keeps it (nothing secret in it)."""

    attempt: int
    """Its number: 1 for the first attempt (a replay starts counting again)."""
    started_at: float
    duration: float
    """Seconds from the call to its answer (0 for an inbox lease)."""
    verdict: str
    """succeeded, retry or dead (the worker's decision); leased or acked for an inbox."""
    status_code: int | None = None
    """The receiver's HTTP status (SMTP reply code for email)."""
    error_class: str | None = None
    """http, timeout, refused, unreachable or error; None for a success."""
    error: str | None = None
    response_headers: dict[str, str] | None = None
    response_body: bytes | None = None
    """The first INGESTD_ATTEMPT_BODY_BYTES of the response body."""


class DeliveryRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery as the status endpoint shows it."""

    id: int
    delivery_id: str
    destination: str
    state: DeliveryState
    attempts: int
    last_error: str | None
    last_status: int | None
    next_attempt_at: float | None
    created_at: float
    updated_at: float
    finished_at: float | None
    log: tuple[AttemptRecord, ...] = ()
    """Its attempt log, oldest first (when the reader asked for it)."""


class StatusReport(msgspec.Struct, frozen=True, kw_only=True):
    """Everything `GET /ingest/{id}/status` says about an event."""

    event: Event
    status: EventStatus
    deliveries: tuple[DeliveryRecord, ...]
    processed_at: float | None


def event_status(states: list[DeliveryState]) -> EventStatus:
    """Aggregate delivery states into the event's status."""
    if all(s in (DeliveryState.SUCCEEDED, DeliveryState.DEAD) for s in states):
        return EventStatus.DEAD if DeliveryState.DEAD in states else EventStatus.COMPLETED
    if DeliveryState.RUNNING in states:
        return EventStatus.PROCESSING
    if DeliveryState.FAILED in states:
        return EventStatus.FAILED
    if any(s in (DeliveryState.SUCCEEDED, DeliveryState.DEAD) for s in states):
        return EventStatus.PROCESSING
    return EventStatus.PENDING
