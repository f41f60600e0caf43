"""Keeps an API process's keyring in step with the keys in the store.

Every second it reads the store's key version (one tiny query) and reloads the keys when
it moved, so a key made or revoked by any process (`ingestd keys`, POST /keys, DELETE
/keys/{id}) is accepted or refused by every API process within about a second; expiry
needs no reload (the keyring checks `expires_at` on each request). It also writes back
when stored keys were last used, every LAST_USED_EVERY seconds. A store that does not
answer keeps the keys it had (logged once per outage).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from ingestd.api.auth import Keyring
from ingestd.errors import StoreUnavailable
from ingestd.store.protocol import Store

log = logging.getLogger("ingestd.api")
POLL_EVERY = 1.0
LAST_USED_EVERY = 30.0


class KeyWatcher:
    def __init__(self, store: Store, keyring: Keyring, interval: float = POLL_EVERY) -> None:
        self._store = store
        self._keyring = keyring
        self._interval = interval
        self._version: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._flushed = time.monotonic()
        self._failing = False

    async def start(self) -> None:
        """Load the stored keys once (before the first request), then keep them fresh."""
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name="api-key-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(StoreUnavailable):
            await self._store.touch_api_keys(self._keyring.take_used())

    async def refresh(self) -> None:
        version = await self._store.api_key_version()
        if version != self._version:
            self._keyring.load(await self._store.api_keys())
            self._version = version

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.refresh()
                if time.monotonic() - self._flushed >= LAST_USED_EVERY:
                    self._flushed = time.monotonic()
                    await self._store.touch_api_keys(self._keyring.take_used())
                if self._failing:
                    log.info("API keys: the store answers again")
                self._failing = False
            except StoreUnavailable as exc:
                if not self._failing:
                    log.warning("API keys: cannot reload from the store, keeping them: %s", exc)
                self._failing = True
            except Exception:
                log.exception("API keys: reload failed; keeping the keys loaded")
