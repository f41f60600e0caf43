"""Per-destination circuit breakers whose state lives in the store, so every worker sees it.

Each worker counts outcomes locally (consecutive failures, failure rate over a window with
a minimum number of calls) and writes only transitions to the store: open until T, the
probe taken, closed again, the start of a failing run. A sync loop reads every breaker
back (~1 s), so a breaker opened by one worker holds in all of them. After the cool-down
exactly one worker wins the probe (an atomic store update); its outcome closes the
breaker or opens it for another cool-down. While open, jobs are not claimed and jobs
already claimed are deferred with their attempt refunded.

The same gate keeps pull destinations (the inbox) out of the push path, and disables a
destination that has been failing for `disable_after` seconds.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import msgspec

from ingestd.destinations.base import Attempt
from ingestd.routing import PULL_KINDS, Directory
from ingestd.store.protocol import BreakerState, BreakerStore

log = logging.getLogger("ingestd.breaker")


class BreakerPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """When a destination's breaker opens, for how long, and when it is given up on."""

    consecutive_failures: int = 5
    """Open after this many failures in a row..."""
    failure_rate: float = 0.5
    """...or when this fraction of the calls in the window failed..."""
    window: float = 60.0
    min_calls: int = 20
    """...and the window holds at least this many calls."""
    cooldown: float = 30.0
    """Seconds open before one probe is let through."""
    probe_lease: float = 60.0
    """A probe not reported within this time is given to another worker."""
    disable_after: float = 5 * 24 * 3600.0
    """Disable a destination failing without a success for this long."""

    def with_overrides(self, options: dict[str, Any]) -> BreakerPolicy:
        """Per-destination settings: `breaker_cooldown = 5`, `disable_after = 3600`, ..."""
        changes: dict[str, Any] = {}
        for field in self.__struct_fields__:
            key = field if field == "disable_after" else f"breaker_{field}"
            if key in options:
                changes[field] = type(getattr(self, field))(options[key])
        return msgspec.structs.replace(self, **changes) if changes else self


class Health:
    """One destination's breaker as this worker sees it."""

    def __init__(self) -> None:
        self.state = BreakerState.CLOSED
        self.until: float | None = None
        self.consecutive = 0
        self.calls: collections.deque[tuple[float, bool]] = collections.deque()
        self.probe_token = False
        self.probing = False
        self.failing = False
        self.failing_since: float | None = None

    def reset(self) -> None:
        self.state = BreakerState.CLOSED
        self.until = None
        self.consecutive = 0
        self.calls.clear()
        self.probe_token = self.probing = False


class Breaker:
    """The worker's Gate: circuit breakers, pull destinations kept out, disable_after."""

    def __init__(
        self,
        store: BreakerStore,
        directory: Directory,
        defaults: BreakerPolicy,
        *,
        on_disable: Callable[[str, str], None] | None = None,
        tenant_id: str = "default",
        sync_interval: float = 0.5,
    ) -> None:
        self._store = store
        self._directory = directory
        self._defaults = defaults
        self._on_disable = on_disable
        self._tenant = tenant_id
        self._interval = sync_interval
        self._health: dict[str, Health] = {}
        self._policies: dict[str, tuple[int, BreakerPolicy]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sync_task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._sync_task = asyncio.create_task(self._sync_loop(), name="breaker-sync")

    async def stop(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5.0)

    # -- the Gate protocol ---------------------------------------------------------------

    def blocked(self) -> Sequence[str]:
        names = []
        for name in self._directory.names():
            route = self._directory.get(name)
            if route is not None and route.config.kind in PULL_KINDS:
                names.append(name)
                continue
            h = self._health.get(name)
            if h is not None and h.state is not BreakerState.CLOSED and not h.probe_token:
                names.append(name)
        return names

    def admit(self, destination: str, now: float) -> float | None:
        route = self._directory.get(destination)
        if route is not None and route.config.kind in PULL_KINDS:
            return now  # pulled through the inbox, never pushed: hand it back as it was
        h = self._health.get(destination)
        if h is None or h.state is BreakerState.CLOSED:
            return None
        if h.probe_token:
            h.probe_token = False
            h.probing = True
            return None
        if h.state is BreakerState.HALF_OPEN:
            return now + min(1.0, self.policy(destination).cooldown)
        return max(h.until or now, now + 0.05)

    def record(self, destination: str, attempt: Attempt, now: float) -> None:
        route = self._directory.get(destination)
        if route is None or route.config.kind in PULL_KINDS:
            return
        if attempt.permanent and not attempt.ok:
            return  # about this message (a bad template, a refused address), not the receiver
        policy = self.policy(destination)
        h = self._health.setdefault(destination, Health())
        if h.probing:
            h.probing = False
            if attempt.ok:
                self._close(destination, h)
            else:
                self._trip(destination, h, policy, now, "probe failed")
            return
        h.calls.append((now, attempt.ok))
        while h.calls and h.calls[0][0] < now - policy.window:
            h.calls.popleft()
        if attempt.ok:
            h.consecutive = 0
            if h.failing or h.state is not BreakerState.CLOSED:
                self._close(destination, h)
            return
        h.consecutive += 1
        if not h.failing:
            h.failing = True
            self._spawn(self._mark_failing(destination, h, now))
        self._check_disable(destination, h, policy, now)
        if h.state is not BreakerState.CLOSED:
            return
        failed = sum(1 for _, ok in h.calls if not ok)
        if h.consecutive >= policy.consecutive_failures:
            self._trip(destination, h, policy, now, f"{h.consecutive} consecutive failures")
        elif len(h.calls) >= policy.min_calls and failed / len(h.calls) >= policy.failure_rate:
            self._trip(destination, h, policy, now, f"{failed}/{len(h.calls)} calls failed")

    # -- transitions ---------------------------------------------------------------------

    def policy(self, destination: str) -> BreakerPolicy:
        route = self._directory.get(destination)
        if route is None:
            return self._defaults
        cached = self._policies.get(destination)
        if cached is None or cached[0] != id(route.config):
            cached = (id(route.config), self._defaults.with_overrides(route.config.options()))
            self._policies[destination] = cached
        return cached[1]

    def _trip(
        self, destination: str, h: Health, policy: BreakerPolicy, now: float, why: str
    ) -> None:
        h.state = BreakerState.OPEN
        h.until = now + policy.cooldown
        h.consecutive = 0
        h.calls.clear()
        log.warning("breaker of %s opened for %gs: %s", destination, policy.cooldown, why)
        self._spawn(self._store.trip_breaker(self._tenant, destination, h.until, now))

    def _close(self, destination: str, h: Health) -> None:
        if h.state is not BreakerState.CLOSED:
            log.info("breaker of %s closed", destination)
            h.reset()
        h.failing = False
        h.failing_since = None
        self._spawn(self._store.close_breaker(self._tenant, destination, time.time()))

    async def _mark_failing(self, destination: str, h: Health, now: float) -> None:
        since = await self._store.mark_failing(self._tenant, destination, now)
        if h.failing and since is not None:
            h.failing_since = since

    def _check_disable(
        self, destination: str, h: Health, policy: BreakerPolicy, now: float
    ) -> None:
        if h.failing_since is None or now - h.failing_since < policy.disable_after:
            return
        route = self._directory.get(destination)
        if route is not None and route.config.enabled and self._on_disable is not None:
            hours = (now - h.failing_since) / 3600
            self._on_disable(destination, f"failing continuously for {hours:.1f} h")

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("breaker state not written: %s", task.exception())

    # -- reading the shared state --------------------------------------------------------

    async def _sync_loop(self) -> None:
        while True:
            try:
                await self.sync(time.time())
            except Exception as exc:
                log.warning("breaker sync failed: %s", exc)
            await asyncio.sleep(self._interval)

    async def sync(self, now: float) -> None:
        """Adopt the store's breaker states; take the probe of a breaker whose cool-down ended."""
        for row in await self._store.list_destinations(self._tenant):
            if row.config.get("kind") in PULL_KINDS:
                continue
            h = self._health.setdefault(row.name, Health())
            h.failing_since = row.failing_since
            h.failing = row.failing_since is not None
            if row.breaker_state is BreakerState.CLOSED:
                if h.state is not BreakerState.CLOSED and not h.probing:
                    h.reset()
            elif not (h.probing or h.probe_token):
                h.state = row.breaker_state
                h.until = row.breaker_until
                if row.enabled and (row.breaker_until or 0.0) <= now:
                    lease = self.policy(row.name).probe_lease
                    if await self._store.take_probe(self._tenant, row.name, lease, now):
                        h.state = BreakerState.HALF_OPEN
                        h.until = now + lease
                        h.probe_token = True
            if row.enabled:
                self._check_disable(row.name, h, self.policy(row.name), now)
