"""Destinations as stored: seeded from the TOML file, changed through the admin API, and
reloaded into every process's Directory when the store's catalog version moves (checked
about once a second, and at once after a local change).

Disabling a destination (410 from the receiver, or failing for `disable_after`) emits
the operational event `ingestd.destination.disabled` through the system itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from pydantic import ValidationError

from ingestd.config import DestinationConfig, Settings
from ingestd.destinations import build_destination
from ingestd.destinations.base import Attempt, Destination
from ingestd.errors import IngestdError
from ingestd.ingest.acceptor import Acceptor
from ingestd.ingest.envelope import parse_event
from ingestd.model import Job
from ingestd.routing import Directory
from ingestd.store.protocol import DestinationRow, DestinationStore

log = logging.getLogger("ingestd.catalog")
DISABLED_EVENT = "ingestd.destination.disabled"


class BrokenDestination:
    """Stands in for a stored destination whose adapter cannot be built here."""

    runs_operator_code = False

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def deliver(self, job: Job) -> Attempt:
        return Attempt(ok=False, error=f"destination is misconfigured: {self.reason}")

    async def close(self) -> None:
        return None


def stored_config(config: DestinationConfig) -> dict[str, Any]:
    """What the store keeps of a config (`enabled` is a column of its own)."""
    data = config.model_dump(mode="json")
    data.pop("enabled", None)
    return data


def seed_config(config: DestinationConfig) -> dict[str, Any]:
    """What the file said of a destination, `enabled` only when false (so the text of an
    enabled entry is the same as before `enabled` took part in it)."""
    data = stored_config(config)
    if not config.enabled:
        data["enabled"] = False
    return data


def config_of(row: DestinationRow) -> DestinationConfig:
    return DestinationConfig(**{**row.config, "name": row.name, "enabled": row.enabled})


class Catalog:
    """Keeps the Directory equal to the stored destinations."""

    def __init__(
        self,
        store: DestinationStore,
        directory: Directory,
        settings: Settings,
        acceptor: Acceptor,
        *,
        tenant_id: str = "default",
        interval: float = 1.0,
    ) -> None:
        self.store = store
        self.directory = directory
        self.settings = settings
        self.acceptor = acceptor
        self.tenant = tenant_id
        self.interval = interval
        self.version: int | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    def build(self, config: DestinationConfig) -> Destination:
        """The Directory's factory: a stored config that cannot be built fails visibly."""
        try:
            return build_destination(config, self.settings)
        except (IngestdError, ValueError, TypeError) as exc:
            log.error("destination %s cannot be built: %s", config.name, exc)
            return BrokenDestination(str(exc))

    async def start(self, *, seed: bool = True, watch: bool = True) -> None:
        if seed:
            await self.seed()
        await self.refresh(force=True)
        if watch:
            self._task = asyncio.create_task(self._watch(), name="catalog-watch")

    async def seed(self) -> None:
        """Apply the config file. The file is declarative, but only about what it changes:
        an entry that is new, or whose text (its `enabled` included) differs from the last
        start, is applied and its `enabled` wins; an unchanged entry leaves the run-time
        state alone, so a destination disabled by a 410 (or through the API) stays disabled
        across restarts until the file entry changes or `PATCH {"enabled": true}`."""
        now = time.time()
        configs = {c.name: c for c in self.settings.destinations}
        changed = await self.store.sync_destinations(
            self.tenant, [seed_config(c) for c in configs.values()], now
        )
        for name in changed:
            config = configs[name]
            # The config column without `enabled` (the seed keeps the file's text).
            await self.store.update_destination(
                self.tenant, name, stored_config(config), now, enabled=config.enabled or None
            )
            if not config.enabled:
                await self.store.disable_destination(
                    self.tenant, name, "disabled in the config file", now
                )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._background:
            await asyncio.wait(list(self._background), timeout=5.0)

    async def refresh(self, *, force: bool = False) -> None:
        """Reload the Directory if the stored destinations changed."""
        async with self._lock:
            version = await self.store.catalog_version()
            if version == self.version and not force:
                return
            configs = []
            for row in await self.store.list_destinations(self.tenant):
                try:
                    configs.append(config_of(row))
                except ValidationError as exc:
                    log.error("stored destination %s is invalid: %s", row.name, exc)
            for stale in self.directory.load(configs):
                await stale.close()
            self.version = version

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("destination reload failed: %s", exc)

    # -- disabling -----------------------------------------------------------------------

    def disable_soon(self, name: str, reason: str) -> None:
        """For synchronous callers (the worker, the breaker)."""
        task = asyncio.get_running_loop().create_task(self.disable(name, reason))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def disable(self, name: str, reason: str) -> bool:
        """Disable it; the one caller that flipped it emits the operational event."""
        now = time.time()
        try:
            flipped = await self.store.disable_destination(self.tenant, name, reason, now)
        except IngestdError as exc:
            log.error("could not disable %s: %s", name, exc)
            return False
        if not flipped:
            return False
        log.warning("destination %s disabled: %s", name, reason)
        await self.refresh()
        try:
            await self.emit_disabled(name, reason, now)
        except IngestdError as exc:
            log.error("could not record %s for %s: %s", DISABLED_EVENT, name, exc)
        return True

    async def emit_disabled(self, name: str, reason: str, now: float) -> None:
        submission = parse_event(
            {
                "source": "ingestd",
                "type": DISABLED_EVENT,
                "subject": name,
                "data": {"destination": name, "reason": reason, "disabled_at": now},
            },
            tenant_id=self.tenant,
            received_at=now,
        )
        await self.acceptor.accept([submission])
