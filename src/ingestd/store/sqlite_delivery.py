"""SQLite side of delivery administration: stored destinations, breaker state, dead
letters and the pull inbox (mixed into SQLiteStore; the SQL is in sqlite.sql)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec

from ingestd.model import DeliveryRecord, DeliveryState, Event, Job
from ingestd.store.protocol import (
    BreakerState,
    DeadLetter,
    DeadLetterPage,
    DeadLetterQuery,
    DestinationRow,
)
from ingestd.store.sql import queries

T = TypeVar("T")
Q = queries("sqlite")
_encode = msgspec.json.encode
_decode = msgspec.json.Decoder(dict[str, Any]).decode


def destination_from_row(row: Sequence[Any]) -> DestinationRow:
    return DestinationRow(
        tenant_id=row[0],
        name=row[1],
        config=_decode(row[2]),
        enabled=bool(row[3]),
        disabled_reason=row[4],
        breaker_state=BreakerState(row[5]),
        breaker_until=row[6],
        failing_since=row[7],
        created_at=row[8],
        updated_at=row[9],
    )


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
    ) -> None:
        def run(c: sqlite3.Connection) -> None:
            changed = False
            names = set()
            for config in configs:
                name = config["name"]
                names.add(name)
                text = canonical(config)
                if c.execute(Q["insert_destination"], (tenant_id, name, text, text, now)).rowcount:
                    changed = True
                    continue
                (seed,) = c.execute(Q["destination_seed"], (tenant_id, name)).fetchone()
                if seed is None or bytes(seed) != text:
                    c.execute(Q["reseed_destination"], (text, now, tenant_id, name))
                    changed = True
            for (name,) in c.execute(Q["seeded_destinations"], (tenant_id,)).fetchall():
                if name not in names:
                    self._delete(c, tenant_id, name, now)
                    changed = True
            if changed:
                c.execute(Q["bump_catalog"])

        await self._write(run)

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
        items = [DeadLetter(record_from_row(r), event_from_joined(r[11:])) for r in rows]
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
                e[0]: event_from_joined(e)
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


def record_from_row(r: Sequence[Any]) -> DeliveryRecord:
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


def event_from_joined(row: Sequence[Any]) -> Event:
    """An Event from (seq, tenant_id, id, source, type, occurred_at, received_at, actor_id,
    subject, data)."""
    return Event(
        tenant_id=row[1],
        id=row[2],
        source=row[3],
        type=row[4],
        occurred_at=row[5],
        received_at=row[6],
        actor_id=row[7],
        subject=row[8],
        data=_decode(row[9]),
    )
