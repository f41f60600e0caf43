"""SQLite side of delivery administration: stored destinations, breaker state, dead
letters and the pull inbox (mixed into SQLiteStore; the SQL is in sqlite.sql)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec

from ingestd.model import Job
from ingestd.store.protocol import (
    DeadLetter,
    DeadLetterPage,
    DeadLetterQuery,
    DestinationRow,
)
from ingestd.store.rows import destination_from_row, event_from_row, record_from_row
from ingestd.store.sql import queries

T = TypeVar("T")
Q = queries("sqlite")
_encode = msgspec.json.encode


def canonical(config: dict[str, Any]) -> bytes:
    return msgspec.json.encode(config, order="sorted")


class SQLiteDeliveryAdmin:
    """Destinations, breaker, dead letters and inbox on the SQLiteStore's connections."""

    _work: asyncio.Event | None

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError

    def _wake(self) -> None:
        if self._work is not None:
            self._work.set()

    # -- destinations --------------------------------------------------------------------

    async def catalog_version(self) -> int:
        row = await self._read(lambda c: c.execute(Q["catalog_version"]).fetchone())
        return int(row[0]) if row else 0

    async def list_destinations(self, tenant_id: str = "default") -> list[DestinationRow]:
        sql = Q["destination_columns"] + " WHERE tenant_id = ? ORDER BY name"
        rows = await self._read(lambda c: c.execute(sql, (tenant_id,)).fetchall())
        return [destination_from_row(r) for r in rows]

    async def get_destination(self, tenant_id: str, name: str) -> DestinationRow | None:
        sql = Q["destination_columns"] + " WHERE tenant_id = ? AND name = ?"
        row = await self._read(lambda c: c.execute(sql, (tenant_id, name)).fetchone())
        return destination_from_row(row) if row else None

    async def sync_destinations(
        self, tenant_id: str, configs: Sequence[dict[str, Any]], now: float
    ) -> list[str]:
        def run(c: sqlite3.Connection) -> list[str]:
            changed: list[str] = []
            names = set()
            for config in configs:
                name = config["name"]
                names.add(name)
                text = canonical(config)
                if c.execute(Q["insert_destination"], (tenant_id, name, text, text, now)).rowcount:
                    changed.append(name)
                    continue
                (seed,) = c.execute(Q["destination_seed"], (tenant_id, name)).fetchone()
                if seed is None or bytes(seed) != text:
                    c.execute(Q["reseed_destination"], (text, now, tenant_id, name))
                    changed.append(name)
            dropped = False
            for (name,) in c.execute(Q["seeded_destinations"], (tenant_id,)).fetchall():
                if name not in names:
                    self._delete(c, tenant_id, name, now)
                    dropped = True
            if changed or dropped:
                c.execute(Q["bump_catalog"])
            return changed

        return await self._write(run)

    async def create_destination(
        self, tenant_id: str, name: str, config: dict[str, Any], now: float
    ) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                Q["insert_destination"], (tenant_id, name, canonical(config), None, now)
            )
            if cur.rowcount:
                c.execute(Q["bump_catalog"])
            return cur.rowcount > 0

        return await self._write(run)

    async def update_destination(
        self,
        tenant_id: str,
        name: str,
        config: dict[str, Any],
        now: float,
        *,
        enabled: bool | None = None,
    ) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            cur = c.execute(Q["update_destination"], (canonical(config), now, tenant_id, name))
            if not cur.rowcount:
                return False
            if enabled is True:
                c.execute(Q["enable_destination"], (now, tenant_id, name))
            elif enabled is False:
                c.execute(
                    Q["disable_destination"], ("disabled by an operator", now, tenant_id, name)
                )
            c.execute(Q["bump_catalog"])
            return True

        found = await self._write(run)
        if found and enabled:
            self._wake()
        return found

    @staticmethod
    def _delete(c: sqlite3.Connection, tenant_id: str, name: str, now: float) -> int:
        c.execute(Q["dead_letter_orphans"], (now, "destination deleted", tenant_id, name))
        return c.execute(Q["delete_destination"], (tenant_id, name)).rowcount

    async def delete_destination(self, tenant_id: str, name: str, now: float) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            if not self._delete(c, tenant_id, name, now):
                return False
            c.execute(Q["bump_catalog"])
            return True

        return await self._write(run)

    async def disable_destination(self, tenant_id: str, name: str, reason: str, now: float) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            cur = c.execute(Q["disable_destination"], (reason, now, tenant_id, name))
            if cur.rowcount:
                c.execute(Q["bump_catalog"])
            return cur.rowcount > 0

        return await self._write(run)

    # -- circuit breaker -----------------------------------------------------------------

    async def trip_breaker(self, tenant_id: str, name: str, until: float, now: float) -> None:
        await self._write(lambda c: c.execute(Q["trip_breaker"], (until, now, tenant_id, name)))

    async def take_probe(self, tenant_id: str, name: str, lease: float, now: float) -> bool:
        cur = await self._write(
            lambda c: c.execute(Q["take_probe"], (now + lease, tenant_id, name, now))
        )
        return cur.rowcount > 0

    async def close_breaker(self, tenant_id: str, name: str, now: float) -> None:
        await self._write(lambda c: c.execute(Q["close_breaker"], (tenant_id, name)))
        self._wake()

    async def mark_failing(self, tenant_id: str, name: str, now: float) -> float | None:
        row = await self._write(
            lambda c: c.execute(Q["mark_failing"], (now, tenant_id, name)).fetchone()
        )
        return float(row[0]) if row and row[0] is not None else None

    # -- dead letters --------------------------------------------------------------------

    @staticmethod
    def _filter(query: DeadLetterQuery) -> tuple[Any, ...]:
        ids = _encode(list(query.ids)) if query.ids is not None else None
        return (
            query.tenant_id,
            query.after,
            query.destination,
            query.event_type,
            query.since,
            query.until,
            ids,
            query.limit,
        )

    async def dead_letters(self, query: DeadLetterQuery) -> DeadLetterPage:
        params = list(self._filter(query))
        params[-1] = query.limit + 1
        rows = await self._read(lambda c: c.execute(Q["dead_letters"], params).fetchall())
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        items = [DeadLetter(record_from_row(r), event_from_row(r[11:])) for r in rows]
        return DeadLetterPage(items, rows[-1][0] if more else None)

    async def replay_dead(self, query: DeadLetterQuery, now: float) -> int:
        params = (*self._filter(query), now)
        count = await self._write(lambda c: c.execute(Q["replay_dead"], params).rowcount)
        if count:
            self._wake()
        return count

    async def purge_dead(self, query: DeadLetterQuery) -> int:
        params = self._filter(query)
        return await self._write(lambda c: c.execute(Q["purge_dead"], params).rowcount)

    # -- pull inbox ----------------------------------------------------------------------

    async def lease_inbox(
        self, tenant_id: str, destination: str, limit: int, visibility: float, now: float
    ) -> list[Job]:
        owner = f"inbox:{destination}"

        def run(c: sqlite3.Connection) -> list[Job]:
            rows = c.execute(
                Q["inbox_lease"], (owner, now + visibility, now, tenant_id, destination, limit)
            ).fetchall()
            if not rows:
                return []
            seqs = sorted({r[1] for r in rows})
            events = {
                e[0]: event_from_row(e)
                for e in c.execute(Q["job_events"], (_encode(seqs),)).fetchall()
            }
            return [
                Job(id=r[0], delivery_id=r[2], destination=r[3], attempt=r[4], event=events[r[1]])
                for r in sorted(rows)
                if r[1] in events
            ]

        return await self._write(run)

    async def ack_inbox(
        self, tenant_id: str, destination: str, delivery_ids: Sequence[str], now: float
    ) -> int:
        params = (now, tenant_id, destination, _encode(list(delivery_ids)))
        return await self._write(lambda c: c.execute(Q["inbox_ack"], params).rowcount)
