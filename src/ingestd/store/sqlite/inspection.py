"""SQLite side of the console's reads (mixed into SQLiteStore; see store/inspection.py)."""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from ingestd.model import Event
from ingestd.store.inspection import (
    Dialect,
    backlog_from,
    count_dead_sql,
    key_probe,
    waiting_from,
)
from ingestd.store.protocol import DeadLetter, DeadLetterQuery, DestinationBacklog
from ingestd.store.sql import queries
from ingestd.store.sqlite.driver import SQLiteDriver

Q = queries("sqlite")
SQLITE = Dialect(
    mark="?",
    ids_in="d.delivery_id IN (SELECT value FROM json_each(?))",
    # Each dead letter's event by its key: SQLite runs the EXISTS per row anyway.
    of_type=("", "EXISTS (SELECT 1 FROM events e WHERE e.seq = d.event_seq AND e.type = ?)"),
    encode_ids=msgspec.json.encode,
)


class SQLiteInspection:
    _ttl: float

    _db: SQLiteDriver  # SQLiteStore's connections

    async def destination_backlog(
        self, tenant_id: str | None, *, dead_cap: int | None = None
    ) -> list[DestinationBacklog]:
        tenant = "" if tenant_id is None else "AND tenant_id = ?"
        params: tuple[Any, ...] = () if tenant_id is None else (tenant_id,)
        waiting_sql = Q["destination_backlog"].format(tenant=tenant)
        dead_sql = Q["dead_by_destination"].format(tenant=tenant)
        capped_sql = Q["dead_of_destination"].format(tenant=tenant)

        def run(c: sqlite3.Connection) -> list[DestinationBacklog]:
            waiting = c.execute(waiting_sql, params).fetchall()
            if dead_cap is None:
                return backlog_from(waiting, c.execute(dead_sql, params).fetchall())
            names = [r[0] for r in c.execute("SELECT DISTINCT name FROM destinations")]
            if dead_cap == 0:
                names = []  # waiting counts only
            dead = [
                (name, c.execute(capped_sql, (name, *params, dead_cap)).fetchone()[0])
                for name in names
            ]
            return backlog_from(waiting, dead, dead_cap)

        return await self._db.view(run)

    async def count_dead(self, query: DeadLetterQuery) -> int:
        sql, params = count_dead_sql(query, SQLITE)
        row = await self._db.view(lambda c: c.execute(sql, params).fetchone())
        return int(row[0])

    async def peek_inbox(self, tenant_id: str, destination: str, limit: int) -> list[DeadLetter]:
        params = (tenant_id, destination, limit)
        rows = await self._db.view(lambda c: c.execute(Q["inbox_peek"], params).fetchall())
        return waiting_from(rows)

    async def idempotency_key_of(self, event: Event) -> str | None:
        scope, key, event_id, low, high = key_probe(event, self._ttl)
        params = (event.tenant_id, scope, key, event_id, low, high)
        row = await self._db.view(lambda c: c.execute(Q["key_of_event"], params).fetchone())
        return str(row[0]) if row else None
