"""PostgreSQL side of delivery administration: stored destinations, breaker state, dead
letters and the pull inbox (mixed into PostgresStore; the SQL is in postgres.sql).

Semantics: docs/store-protocol-additions.md, the same as `store/sqlite_delivery.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
from psycopg.rows import TupleRow

from ingestd.model import Job
from ingestd.store.pg_connections import Conn, PostgresConnections
from ingestd.store.protocol import DeadLetter, DeadLetterPage, DeadLetterQuery, DestinationRow
from ingestd.store.rows import destination_from_row, event_from_row, job_from_row, record_from_row
from ingestd.store.sql import queries

Q = queries("postgres")
for _name in ("dead_letters", "replay_dead", "purge_dead"):
    Q[_name] = Q[_name].replace("{dead_letter_ids}", Q["dead_letter_ids"])


def canonical(config: dict[str, Any]) -> str:
    return msgspec.json.encode(config, order="sorted").decode()


class PostgresDeliveryAdmin(PostgresConnections):
    """Destinations, breaker, dead letters and inbox on the PostgresStore's pool."""

    _work: asyncio.Event | None

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Conn]:
        async with self._connection() as conn, conn.transaction():
            yield conn

    async def _rows(self, query: str, params: dict[str, Any]) -> list[TupleRow]:
        async with self._connection() as conn:
            return await (await conn.execute(query, params)).fetchall()

    async def _count(self, query: str, params: dict[str, Any]) -> int:
        async with self._connection() as conn:
            return (await conn.execute(query, params)).rowcount

    def _wake(self) -> None:
        if self._work is not None:
            self._work.set()

    # -- destinations --------------------------------------------------------------------

    async def catalog_version(self) -> int:
        rows = await self._rows(Q["catalog_version"], {})
        return int(rows[0][0]) if rows else 0

    async def list_destinations(self, tenant_id: str = "default") -> list[DestinationRow]:
        query = Q["destination_columns"] + " WHERE tenant_id = %(tenant_id)s ORDER BY name"
        return [destination_from_row(r) for r in await self._rows(query, {"tenant_id": tenant_id})]

    async def get_destination(self, tenant_id: str, name: str) -> DestinationRow | None:
        query = Q["destination_columns"] + " WHERE tenant_id = %(tenant_id)s AND name = %(name)s"
        rows = await self._rows(query, {"tenant_id": tenant_id, "name": name})
        return destination_from_row(rows[0]) if rows else None

    async def sync_destinations(
        self, tenant_id: str, configs: Sequence[dict[str, Any]], now: float
    ) -> list[str]:
        async with self._transaction() as conn:
            changed: list[str] = []
            dropped = False
            names = set()
            for config in configs:
                names.add(config["name"])
                params = {
                    "tenant_id": tenant_id,
                    "name": config["name"],
                    "config": canonical(config),
                    "seed": canonical(config),
                    "now": now,
                }
                for step in ("insert_destination", "reseed_destination"):
                    if (await conn.execute(Q[step], params)).rowcount:
                        changed.append(config["name"])
                        break
            seeded = await conn.execute(Q["seeded_destinations"], {"tenant_id": tenant_id})
            for (name,) in await seeded.fetchall():
                if name not in names:
                    await _delete(conn, tenant_id, name, now)
                    dropped = True
            if changed or dropped:
                await conn.execute(Q["bump_catalog"])
        return changed

    async def create_destination(
        self, tenant_id: str, name: str, config: dict[str, Any], now: float
    ) -> bool:
        params = {
            "tenant_id": tenant_id,
            "name": name,
            "config": canonical(config),
            "seed": None,
            "now": now,
        }
        async with self._transaction() as conn:
            created = (await conn.execute(Q["insert_destination"], params)).rowcount > 0
            if created:
                await conn.execute(Q["bump_catalog"])
        return created

    async def update_destination(
        self,
        tenant_id: str,
        name: str,
        config: dict[str, Any],
        now: float,
        *,
        enabled: bool | None = None,
    ) -> bool:
        params = {
            "tenant_id": tenant_id,
            "name": name,
            "config": canonical(config),
            "now": now,
            "reason": "disabled by an operator",
        }
        async with self._transaction() as conn:
            if not (await conn.execute(Q["update_destination"], params)).rowcount:
                return False
            if enabled is True:
                await conn.execute(Q["enable_destination"], params)
            elif enabled is False:
                await conn.execute(Q["disable_destination"], params)
            await conn.execute(Q["bump_catalog"])
        if enabled:
            self._wake()
        return True

    async def delete_destination(self, tenant_id: str, name: str, now: float) -> bool:
        async with self._transaction() as conn:
            if not await _delete(conn, tenant_id, name, now):
                return False
            await conn.execute(Q["bump_catalog"])
        return True

    async def disable_destination(self, tenant_id: str, name: str, reason: str, now: float) -> bool:
        params = {"tenant_id": tenant_id, "name": name, "reason": reason, "now": now}
        async with self._transaction() as conn:
            flipped = (await conn.execute(Q["disable_destination"], params)).rowcount > 0
            if flipped:
                await conn.execute(Q["bump_catalog"])
        return flipped

    # -- circuit breaker -----------------------------------------------------------------

    async def trip_breaker(self, tenant_id: str, name: str, until: float, now: float) -> None:
        params = {"tenant_id": tenant_id, "name": name, "until": until, "now": now}
        await self._count(Q["trip_breaker"], params)

    async def take_probe(self, tenant_id: str, name: str, lease: float, now: float) -> bool:
        params = {"tenant_id": tenant_id, "name": name, "until": now + lease, "now": now}
        return await self._count(Q["take_probe"], params) > 0

    async def close_breaker(self, tenant_id: str, name: str, now: float) -> None:
        await self._count(Q["close_breaker"], {"tenant_id": tenant_id, "name": name})
        self._wake()

    async def mark_failing(self, tenant_id: str, name: str, now: float) -> float | None:
        params = {"tenant_id": tenant_id, "name": name, "now": now}
        rows = await self._rows(Q["mark_failing"], params)
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    # -- dead letters --------------------------------------------------------------------

    @staticmethod
    def _filter(query: DeadLetterQuery, limit: int) -> dict[str, Any]:
        return {
            "tenant_id": query.tenant_id,
            "after": query.after,
            "destination": query.destination,
            "event_type": query.event_type,
            "since": query.since,
            "until": query.until,
            "ids": list(query.ids) if query.ids is not None else None,
            "limit": limit,
        }

    async def dead_letters(self, query: DeadLetterQuery) -> DeadLetterPage:
        rows = await self._rows(Q["dead_letters"], self._filter(query, query.limit + 1))
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        items = [DeadLetter(record_from_row(r), event_from_row(r[11:])) for r in rows]
        return DeadLetterPage(items, rows[-1][0] if more else None)

    async def replay_dead(self, query: DeadLetterQuery, now: float) -> int:
        params = {**self._filter(query, query.limit), "now": now}
        count = await self._count(Q["replay_dead"], params)
        if count:
            async with self._connection() as conn:
                await conn.execute("SELECT pg_notify('ingestd_work', '')")
            self._wake()
        return count

    async def purge_dead(self, query: DeadLetterQuery) -> int:
        return await self._count(Q["purge_dead"], self._filter(query, query.limit))

    # -- pull inbox ----------------------------------------------------------------------

    async def lease_inbox(
        self, tenant_id: str, destination: str, limit: int, visibility: float, now: float
    ) -> list[Job]:
        params = {
            "tenant_id": tenant_id,
            "destination": destination,
            "limit": limit,
            "owner": f"inbox:{destination}",
            "until": now + visibility,
            "now": now,
        }
        return [job_from_row(r) for r in await self._rows(Q["inbox_lease"], params)]

    async def ack_inbox(
        self, tenant_id: str, destination: str, delivery_ids: Sequence[str], now: float
    ) -> int:
        params = {
            "tenant_id": tenant_id,
            "destination": destination,
            "ids": list(delivery_ids),
            "now": now,
        }
        return await self._count(Q["inbox_ack"], params)


async def _delete(conn: Conn, tenant_id: str, name: str, now: float) -> int:
    """Its unfinished deliveries become dead letters, then the destination goes."""
    params = {"tenant_id": tenant_id, "name": name, "now": now, "reason": "destination deleted"}
    await conn.execute(Q["dead_letter_orphans"], params)
    return (await conn.execute(Q["delete_destination"], params)).rowcount
