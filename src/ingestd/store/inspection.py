"""The console's reads (store.protocol.Inspection), written once for both SQL backends:
each backend supplies how to run a query; the SQL is in sqlite.sql and postgres.sql."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ingestd.model import Event
from ingestd.store.protocol import DeadLetter, DeadLetterQuery, DestinationBacklog
from ingestd.store.rows import event_from_row, record_from_row

KEY_WINDOW = (-1.0, 30.0)
"""Where a key's expiry falls around `received_at + ttl`: the commit follows the request by
milliseconds, seconds under load."""


def backlog_from(
    waiting: Sequence[Sequence[Any]], dead: Sequence[Sequence[Any]], dead_cap: int | None = None
) -> list[DestinationBacklog]:
    """DestinationBacklog rows from (destination, state, count, min run_at, min created_at)
    and (destination, count) rows."""
    found: dict[str, dict[str, Any]] = {}
    for name, state, count, oldest, created in waiting:
        entry = found.setdefault(name, {"destination": name})
        entry[state] = int(count)
        if oldest is not None and state != "running":
            entry["oldest_due"] = min(entry.get("oldest_due", oldest), oldest)
        if created is not None:
            entry["oldest_created"] = min(entry.get("oldest_created", created), created)
    for name, count in dead:
        if count or dead_cap is None:
            found.setdefault(name, {"destination": name})["dead"] = int(count)
    return [DestinationBacklog(**found[name]) for name in sorted(found)]


def waiting_from(rows: Sequence[Sequence[Any]]) -> list[DeadLetter]:
    return [DeadLetter(record_from_row(r), event_from_row(r[11:])) for r in rows]


def key_probe(event: Event, ttl: float) -> tuple[str, str, str, float, float]:
    """(scope, the `source:id` key, event id, expiry low, expiry high) for key_of_event."""
    base = event.received_at + ttl
    return (
        event.source,
        f"{event.source}:{event.id}",
        event.id,
        base + KEY_WINDOW[0],
        base + KEY_WINDOW[1],
    )


def count_params(query: DeadLetterQuery) -> dict[str, Any]:
    return {
        "tenant_id": query.tenant_id,
        "after": query.after,
        "destination": query.destination,
        "since": query.since,
        "until": query.until,
        "ids": list(query.ids) if query.ids is not None else None,
        "event_type": query.event_type,
        "limit": query.limit,
    }
