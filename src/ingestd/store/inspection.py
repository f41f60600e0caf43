"""The console's reads (store.protocol.Inspection), written once for both SQL backends:
each backend supplies how to run a query; the SQL is in sqlite.sql and postgres.sql."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Dialect:
    """How a backend spells what the dead-letter count needs."""

    mark: str
    ids_in: str
    """`delivery_id` among a list parameter."""
    of_type: tuple[str, str]
    """(join, condition) selecting dead letters whose event has a type."""
    encode_ids: Callable[[list[str]], Any]


def count_dead_sql(query: DeadLetterQuery, dialect: Dialect) -> tuple[str, list[Any]]:
    """A count of at most `query.limit` dead letters, with a condition per filter given
    (no `? IS NULL OR ...`: the planner then picks the index that fits, e.g.
    deliveries_dead_destination for one destination)."""
    m = dialect.mark
    clauses = ["d.state = 'dead'", f"d.tenant_id = {m}", f"d.id > {m}"]
    params: list[Any] = [query.tenant_id, query.after]
    order = ["d.tenant_id"]
    if query.destination is not None:
        clauses.append(f"d.destination = {m}")
        params.append(query.destination)
        order.append("d.destination")
    for op, value in ((">=", query.since), ("<", query.until)):
        if value is not None:
            clauses.append(f"d.finished_at {op} {m}")
            params.append(value)
    if query.ids is not None:
        clauses.append(dialect.ids_in)
        params.append(dialect.encode_ids(list(query.ids)))
    join = ""
    if query.event_type is not None:
        join, condition = dialect.of_type
        clauses.append(condition)
        params.append(query.event_type)
    params.append(query.limit)
    sql = (
        f"SELECT count(*) FROM (SELECT 1 FROM deliveries d {join} "
        f"WHERE {' AND '.join(clauses)} ORDER BY {', '.join(order)}, d.id LIMIT {m}) AS counted"
    )
    return sql, params
