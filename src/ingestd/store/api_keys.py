"""Stored API keys, written once for every SQL backend over its Driver (the same block
names and named parameters in `sqlite/queries.sql` and `postgres/queries.sql`).

Each change bumps `api_key_catalog.version` in the same transaction, so a process that
polls the version reloads exactly when something changed.
"""

from __future__ import annotations

from collections.abc import Mapping

from ingestd.keys import StoredKey
from ingestd.store.driver import Driver
from ingestd.store.key_rows import COLUMNS, key_from_row, key_values


class KeyStore:
    """The KeyStore role on a Driver (mixed into each backend's store)."""

    _sql: Driver

    async def create_api_key(self, key: StoredKey) -> None:
        values = dict(zip(COLUMNS, key_values(key), strict=True))
        values["scopes"] = self._sql.texts(list(key.scopes))
        async with self._sql.transaction() as tx:
            await tx.run("insert_api_key", values)
            await tx.run("bump_api_keys")

    async def api_keys(self, tenant_id: str | None = None) -> list[StoredKey]:
        rows = await self._sql.read("api_keys", {"tenant_id": tenant_id})
        return [key_from_row(r) for r in rows]

    async def revoke_api_key(self, key_id: str, now: float, tenant_id: str | None = None) -> bool:
        async with self._sql.transaction() as tx:
            params = {"id": key_id, "now": now, "tenant_id": tenant_id}
            if not (await tx.run("revoke_api_key", params)).rowcount:
                return False
            await tx.run("bump_api_keys")
            return True

    async def api_key_version(self) -> int:
        rows = await self._sql.read("api_key_version")
        return int(rows[0][0]) if rows else 0

    async def touch_api_keys(self, used: Mapping[str, float]) -> None:
        if not used:
            return
        async with self._sql.transaction() as tx:
            for key_id, at in used.items():
                await tx.run("touch_api_key", {"id": key_id, "at": at})
