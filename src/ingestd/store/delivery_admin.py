"""Delivery administration, written once for every SQL backend: stored destinations,
breaker state, dead letters (their attempt log with them) and inbox acknowledgements
(logged as attempts), over the backend's Driver.

The SQL is each dialect's (the same block names and named parameters in
`sqlite/queries.sql` and `postgres/queries.sql`); the transactions are these. Leasing
the inbox is a claim, and stays with each backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ingestd.store.attempt_rows import lease_row
from ingestd.store.driver import Driver, Transaction
from ingestd.store.protocol import DeadLetter, DeadLetterPage, DeadLetterQuery, DestinationRow
from ingestd.store.rows import destination_from_row, event_from_row, record_from_row


class DeliveryAdmin:
    """DestinationStore, BreakerStore, DeadLetterStore and `ack_inbox` on a Driver."""

    def __init__(self, driver: Driver) -> None:
        self._sql = driver

    # -- destinations --------------------------------------------------------------------

    async def catalog_version(self) -> int:
        rows = await self._sql.read("catalog_version")
        return int(rows[0][0]) if rows else 0

    async def list_destinations(self, tenant_id: str = "default") -> list[DestinationRow]:
        rows = await self._sql.read("list_destinations", {"tenant_id": tenant_id})
        return [destination_from_row(r) for r in rows]

    async def get_destination(self, tenant_id: str, name: str) -> DestinationRow | None:
        rows = await self._sql.read("get_destination", {"tenant_id": tenant_id, "name": name})
        return destination_from_row(rows[0]) if rows else None

    async def sync_destinations(
        self, tenant_id: str, configs: Sequence[dict[str, Any]], now: float
    ) -> list[str]:
        changed: list[str] = []
        names = {config["name"] for config in configs}
        async with self._sql.transaction() as tx:
            for config in configs:
                text = self._sql.json(config)
                params = {
                    "tenant_id": tenant_id,
                    "name": config["name"],
                    "config": text,
                    "seed": text,
                    "now": now,
                }
                # New, or its file text changed since it was last seeded: the file's word.
                for step in ("insert_destination", "reseed_destination"):
                    if (await tx.run(step, params)).rowcount:
                        changed.append(config["name"])
                        break
            dropped = False
            seeded = await tx.run("seeded_destinations", {"tenant_id": tenant_id})
            for (name,) in seeded.rows:
                if name not in names:
                    await _delete(tx, tenant_id, name, now)
                    dropped = True
            if changed or dropped:
                await tx.run("bump_catalog")
        return changed

    async def create_destination(
        self, tenant_id: str, name: str, config: dict[str, Any], now: float
    ) -> bool:
        params = {
            "tenant_id": tenant_id,
            "name": name,
            "config": self._sql.json(config),
            "seed": None,
            "now": now,
        }
        async with self._sql.transaction() as tx:
            created = (await tx.run("insert_destination", params)).rowcount > 0
            if created:
                await tx.run("bump_catalog")
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
            "config": self._sql.json(config),
            "now": now,
            "reason": "disabled by an operator",
        }
        async with self._sql.transaction() as tx:
            if not (await tx.run("update_destination", params)).rowcount:
                return False
            if enabled is True:
                await tx.run("enable_destination", params)
            elif enabled is False:
                await tx.run("disable_destination", params)
            await tx.run("bump_catalog")
        if enabled:
            self._sql.wake()  # its jobs held back while it was disabled are due
        return True

    async def delete_destination(self, tenant_id: str, name: str, now: float) -> bool:
        async with self._sql.transaction() as tx:
            if not await _delete(tx, tenant_id, name, now):
                return False
            await tx.run("bump_catalog")
        return True

    async def disable_destination(self, tenant_id: str, name: str, reason: str, now: float) -> bool:
        params = {"tenant_id": tenant_id, "name": name, "reason": reason, "now": now}
        async with self._sql.transaction() as tx:
            flipped = (await tx.run("disable_destination", params)).rowcount > 0
            if flipped:
                await tx.run("bump_catalog")
        return flipped

    # -- circuit breaker -----------------------------------------------------------------

    async def trip_breaker(self, tenant_id: str, name: str, until: float, now: float) -> None:
        params = {"tenant_id": tenant_id, "name": name, "until": until, "now": now}
        await self._sql.write("trip_breaker", params)

    async def take_probe(self, tenant_id: str, name: str, lease: float, now: float) -> bool:
        params = {"tenant_id": tenant_id, "name": name, "until": now + lease, "now": now}
        return (await self._sql.write("take_probe", params)).rowcount > 0

    async def close_breaker(self, tenant_id: str, name: str, now: float) -> None:
        await self._sql.write("close_breaker", {"tenant_id": tenant_id, "name": name})
        self._sql.wake()

    async def mark_failing(self, tenant_id: str, name: str, now: float) -> float | None:
        params = {"tenant_id": tenant_id, "name": name, "now": now}
        rows = (await self._sql.write("mark_failing", params)).rows
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    # -- dead letters --------------------------------------------------------------------

    def _filter(self, query: DeadLetterQuery, limit: int) -> dict[str, Any]:
        return {
            "tenant_id": query.tenant_id,
            "after": query.after,
            "destination": query.destination,
            "event_type": query.event_type,
            "since": query.since,
            "until": query.until,
            "ids": self._sql.texts(query.ids) if query.ids is not None else None,
            "limit": limit,
        }

    async def dead_letters(self, query: DeadLetterQuery) -> DeadLetterPage:
        rows = await self._sql.read("dead_letters", self._filter(query, query.limit + 1))
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        items = [DeadLetter(record_from_row(r), event_from_row(r[11:])) for r in rows]
        return DeadLetterPage(items, rows[-1][0] if more else None)

    async def replay_dead(self, query: DeadLetterQuery, now: float) -> int:
        params = {**self._filter(query, query.limit), "now": now}
        count = (await self._sql.write("replay_dead", params)).rowcount
        if count:
            await self._sql.announce_work()
        return count

    async def purge_dead(self, query: DeadLetterQuery) -> int:
        params = self._filter(query, query.limit)
        async with self._sql.transaction() as tx:
            await tx.run("purge_dead_attempts", params)  # the attempt log goes with them
            return (await tx.run("purge_dead", params)).rowcount

    # -- pull inbox ----------------------------------------------------------------------

    async def ack_inbox(
        self, tenant_id: str, destination: str, delivery_ids: Sequence[str], now: float
    ) -> int:
        params = {
            "tenant_id": tenant_id,
            "destination": destination,
            "ids": self._sql.texts(delivery_ids),
            "now": now,
        }
        async with self._sql.transaction() as tx:
            acked = (await tx.run("inbox_ack", params)).rows
            for delivery, attempt in acked:  # an acknowledgement ends the inbox's attempt
                await tx.run("insert_attempt", lease_row(delivery, attempt, now, "acked"))
        return len(acked)


async def _delete(tx: Transaction, tenant_id: str, name: str, now: float) -> int:
    """Its unfinished deliveries become dead letters, then the destination goes."""
    params = {"tenant_id": tenant_id, "name": name, "now": now, "reason": "destination deleted"}
    await tx.run("dead_letter_orphans", params)
    return (await tx.run("delete_destination", params)).rowcount
