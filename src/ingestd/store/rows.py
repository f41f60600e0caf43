"""Rows → values, shared by every SQL backend (SQLite and PostgreSQL select the same columns)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from ingestd.model import DeliveryRecord, DeliveryState, Event, Job, StatusReport, event_status
from ingestd.store.protocol import BreakerState, DestinationRow, EventQuery

EVENT_COLUMNS = (
    "seq, tenant_id, id, source, type, occurred_at, received_at, actor_id, subject, data"
)
_decode_data = msgspec.json.Decoder(dict[str, Any]).decode


def event_from_row(row: Sequence[Any], trace: str | None = None) -> Event:
    """An Event from a row of EVENT_COLUMNS (claims also select its `trace`)."""
    return Event(
        tenant_id=row[1],
        id=row[2],
        source=row[3],
        type=row[4],
        occurred_at=row[5],
        received_at=row[6],
        actor_id=row[7],
        subject=row[8],
        data=_decode_data(row[9]),
        trace=trace,
    )


def job_from_row(r: Sequence[Any], trace: str | None = None, interrupted: int = 0) -> Job:
    """A Job from (id, delivery_id, destination, attempt, *EVENT_COLUMNS)."""
    return Job(
        id=r[0],
        delivery_id=r[1],
        destination=r[2],
        attempt=r[3],
        event=event_from_row(r[4:], trace),
        interrupted=interrupted,
    )


def event_filters(query: EventQuery, mark: str) -> tuple[list[str], list[Any]]:
    """WHERE clauses and parameters for GET /events' filters (`mark`: ? or %s)."""
    clauses = [f"tenant_id = {mark}"]
    params: list[Any] = [query.tenant_id]
    for column, op, value in (
        ("source", "=", query.source),
        ("type", "=", query.type),
        ("occurred_at", ">=", query.since),
        ("occurred_at", "<", query.until),
    ):
        if value is not None:
            clauses.append(f"{column} {op} {mark}")
            params.append(value)
    return clauses, params


def record_from_row(r: Sequence[Any]) -> DeliveryRecord:
    """A DeliveryRecord from a row of the `event_deliveries` columns."""
    return DeliveryRecord(
        id=r[0],
        delivery_id=r[1],
        destination=r[2],
        state=DeliveryState(r[3]),
        attempts=r[4],
        last_error=r[5],
        last_status=r[6],
        next_attempt_at=r[7] if r[3] in ("pending", "failed") else None,
        created_at=r[8],
        updated_at=r[9],
        finished_at=r[10],
    )


def destination_from_row(row: Sequence[Any]) -> DestinationRow:
    return DestinationRow(
        tenant_id=row[0],
        name=row[1],
        config=_decode_data(row[2]),
        enabled=bool(row[3]),
        disabled_reason=row[4],
        breaker_state=BreakerState(row[5]),
        breaker_until=row[6],
        failing_since=row[7],
        created_at=row[8],
        updated_at=row[9],
        disabled_at=row[10],
    )


def build_status(event: Event, rows: Sequence[Sequence[Any]]) -> StatusReport:
    """Aggregate delivery rows (see `event_deliveries`) into the status report."""
    records = tuple(record_from_row(r) for r in rows)
    status = event_status([d.state for d in records])
    if not records:
        processed_at: float | None = event.received_at
    elif all(d.finished_at is not None for d in records):
        processed_at = max(d.finished_at or 0.0 for d in records)
    else:
        processed_at = None
    return StatusReport(event=event, status=status, deliveries=records, processed_at=processed_at)


def inbox_lease_params(
    tenant_id: str, destination: str, limit: int, visibility: float, now: float
) -> dict[str, Any]:
    """The named parameters of every dialect's `inbox_lease`: the consumer holds the lease
    as owner `inbox:<destination>` until now + visibility."""
    return {
        "tenant_id": tenant_id,
        "destination": destination,
        "limit": limit,
        "owner": f"inbox:{destination}",
        "until": now + visibility,
        "now": now,
    }
