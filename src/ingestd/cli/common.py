"""What the commands share: the event loop they run on, and a store opened for one command."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from ingestd.config import Settings, masked
from ingestd.errors import StoreUnavailable
from ingestd.store import Store, store_from_url

log = logging.getLogger("ingestd")


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


async def wait_for_store(settings: Settings, patience: float) -> None:
    """Return once the store opens (connects and is migrated), retrying with backoff while
    it is unavailable (PostgreSQL still starting, or not up yet) for up to `patience`
    seconds; then the last StoreUnavailable is raised. A schema newer than the code, or
    bad settings, fail at once: waiting would not help."""
    deadline = time.monotonic() + patience
    delay = 0.5
    attempt = 0
    while True:
        attempt += 1
        store = store_from_url(
            settings.database_url,
            idempotency_ttl=settings.idempotency_ttl,
            synchronous=settings.sqlite_synchronous,
        )
        try:
            await store.open()
        except StoreUnavailable as exc:
            await store.close()
            left = deadline - time.monotonic()
            if left <= 0:
                log.error(
                    "the store %s is still unavailable after %.0f s (%d attempts); giving up",
                    masked(settings.database_url),
                    patience,
                    attempt,
                )
                raise
            wait = min(delay, left)
            log.warning(
                "the store %s is not available yet (%s); retrying in %.1f s (giving up %.0f s "
                "after the start)",
                masked(settings.database_url),
                exc,
                wait,
                patience,
            )
            await asyncio.sleep(wait)
            delay = min(delay * 2, 5.0)
            continue
        await store.close()
        if attempt > 1:
            log.warning("the store is available after %d attempt(s)", attempt)
        return
