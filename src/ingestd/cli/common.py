"""What the commands share: the event loop they run on, and a store opened for one command."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from ingestd.config import Settings
from ingestd.store import Store, store_from_url


def run_async(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency, but not on every platform
        return asyncio.run(coro)


def with_store(settings: Settings, fn: Callable[[Store], Coroutine[Any, Any, int]]) -> int:
    async def main() -> int:
        store = store_from_url(
            settings.database_url,
            idempotency_ttl=settings.idempotency_ttl,
            synchronous=settings.sqlite_synchronous,
        )
        await store.open()
        try:
            return await fn(store)
        finally:
            await store.close()

    return run_async(main())
