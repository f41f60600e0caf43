"""Until the shared admin service (issue 11) lands: the destination and dead-letter
operations the console needs, with its method names, over the same store calls the API
routes make. Removed when `runtime.admin` exists."""

from __future__ import annotations

import time
from typing import Any

from pydantic import ValidationError

from ingestd.catalog import stored_config
from ingestd.config import DestinationConfig
from ingestd.destinations import build_destination
from ingestd.errors import IngestdError
from ingestd.runtime import Runtime
from ingestd.store.protocol import DeadLetterQuery, DestinationRow

TENANT = "default"


class AdminError(IngestdError):
    """The change was refused; the message says why."""


class InterimAdmin:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.store = runtime.store

    async def validated(self, doc: dict[str, Any]) -> DestinationConfig:
        try:
            config = DestinationConfig(**doc)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first.get("loc", ()))
            raise AdminError(f"{field}: {first.get('msg', 'invalid')}") from None
        try:
            adapter = build_destination(config, self.runtime.settings)
        except (IngestdError, ValueError, TypeError) as exc:
            raise AdminError(str(exc)) from None
        await adapter.close()
        return config

    async def destination(self, name: str) -> DestinationRow:
        row = await self.store.get_destination(TENANT, name)
        if row is None:
            raise AdminError(f"no destination named {name!r}")
        return row

    async def create_destination(self, doc: dict[str, Any]) -> DestinationRow:
        config = await self.validated(doc)
        now = time.time()
        if not await self.store.create_destination(TENANT, config.name, stored_config(config), now):
            raise AdminError(f"a destination named {config.name!r} exists")
        if not config.enabled:
            await self.store.disable_destination(TENANT, config.name, "created disabled", now)
        await self.runtime.catalog.refresh()
        return await self.destination(config.name)

    async def patch_destination(self, name: str, patch: dict[str, Any]) -> DestinationRow:
        row = await self.destination(name)
        merged = dict(row.config)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        enabled = merged.pop("enabled", None)
        config = await self.validated({**merged, "name": name})
        await self.store.update_destination(
            TENANT, name, stored_config(config), time.time(), enabled=enabled
        )
        await self.runtime.catalog.refresh()
        return await self.destination(name)

    async def replay(self, query: DeadLetterQuery) -> int:
        return await self.store.replay_dead(query, time.time())

    async def purge(self, query: DeadLetterQuery) -> int:
        return await self.store.purge_dead(query)
