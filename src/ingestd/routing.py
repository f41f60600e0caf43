"""Routing: which destinations an event goes to, and the live set of destinations.

`Directory` holds the live set (each a `Route`: config, `Subscription`, adapter), built by
a factory the runtime supplies; `delivery_id` names each (event, destination) pair once
for every retry and replay; `Arrivals` wakes the inbox's long-polls.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence

from ingestd.config import DestinationConfig
from ingestd.destinations.base import PULL_KINDS as PULL_KINDS
from ingestd.destinations.base import Destination
from ingestd.model import AcceptOutcome, Event
from ingestd.store.protocol import Routed, given_jobs

DestinationFactory = Callable[[DestinationConfig], Destination]


def runs_operator_code(destination: Destination) -> bool:
    """Whether an attempt runs the operator's Python in this process (a handler, a custom
    kind), so it can end the process. Adapters that only talk to the network say
    `runs_operator_code = False`; anything that does not say is assumed to."""
    return bool(getattr(destination, "runs_operator_code", True))


def delivery_id(event: Event, destination: str) -> str:
    """A stable id for (event, destination): the same on every retry and replay."""
    digest = hashlib.blake2b(
        f"{event.tenant_id}\0{event.id}\0{destination}".encode(), digest_size=12
    ).hexdigest()
    return f"msg_{digest}"


class Subscription:
    """Which events a destination takes: type globs and (optionally) sources."""

    def __init__(self, config: DestinationConfig) -> None:
        self.every_type = "*" in config.event_types
        self._patterns = [fnmatch.translate(p) for p in config.event_types]
        self._regex = re.compile("|".join(self._patterns) or "(?!)")
        self._sources = frozenset(config.sources)

    def matches(self, event: Event) -> bool:
        if self._sources and event.source not in self._sources:
            return False
        if event.type is None:
            return self.every_type
        return self._regex.fullmatch(event.type) is not None


class Route:
    """One live destination: its config, subscription, adapter and concurrency cap."""

    def __init__(self, config: DestinationConfig, destination: Destination) -> None:
        self.config = config
        self.subscription = Subscription(config)
        self.destination = destination
        self.running = 0
        """Attempts under way; the worker keeps it at or below `config.max_in_flight`."""


class Arrivals:
    """Wakes long-polls (the pull inbox) when a job for their destination is committed.

    A waiter registers before it looks in the store, so a commit between its look and its
    wait still wakes it. This process's commits arrive through the acceptor's hook, other
    processes' through the store (`watch_arrivals`: PostgreSQL NOTIFY); the waiter's poll
    is only a fallback.
    """

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    def expect(self, destination: str) -> asyncio.Future[None]:
        """A future resolved at the next commit of a job for `destination`."""
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(destination, set()).add(future)
        future.add_done_callback(lambda f: self._forget(destination, f))
        return future

    def _forget(self, destination: str, future: asyncio.Future[None]) -> None:
        waiting = self._waiters.get(destination)
        if waiting is not None:
            waiting.discard(future)
            if not waiting:
                del self._waiters[destination]

    def notify(self, destination: str) -> None:
        for future in list(self._waiters.get(destination, ())):
            if not future.done():
                future.set_result(None)

    def remote(self, destinations: Sequence[str] | None) -> None:
        """The store's word that another process committed jobs (None: for any of them)."""
        for name in list(self._waiters) if destinations is None else destinations:
            self.notify(name)

    def committed(self, batch: Sequence[Routed], outcomes: Sequence[AcceptOutcome]) -> None:
        """The acceptor's commit hook: wake whoever waits for a destination just given jobs."""
        if self._waiters:
            for name in given_jobs(batch, outcomes):
                self.notify(name)


class Directory:
    """The live destinations, rebuilt when their configuration changes."""

    def __init__(self, factory: DestinationFactory) -> None:
        self._factory = factory
        self.arrivals = Arrivals()
        self._routes: dict[str, Route] = {}
        self._cache: dict[tuple[str, str | None], tuple[str, ...]] = {}

    def load(self, configs: Iterable[DestinationConfig]) -> list[Destination]:
        """Replace the set; returns adapters no longer used, for the caller to close."""
        fresh: dict[str, Route] = {}
        stale: list[Destination] = []
        for config in configs:
            old = self._routes.get(config.name)
            if old is not None and old.config == config:
                fresh[config.name] = old
            else:
                fresh[config.name] = Route(config, self._factory(config))
                if old is not None:
                    stale.append(old.destination)
        stale += [r.destination for n, r in self._routes.items() if n not in fresh]
        self._routes = fresh
        self._cache.clear()
        return stale

    def get(self, name: str) -> Route | None:
        return self._routes.get(name)

    def names(self) -> list[str]:
        return list(self._routes)

    def configs(self) -> list[DestinationConfig]:
        return [route.config for route in self._routes.values()]

    def subscribers(self, event: Event) -> tuple[str, ...]:
        """Names of the enabled destinations that take this event (cached per source/type)."""
        key = (event.source, event.type)
        names = self._cache.get(key)
        if names is None:
            names = tuple(
                name
                for name, route in self._routes.items()
                if route.config.enabled and route.subscription.matches(event)
            )
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = names
        return names

    async def close(self) -> None:
        for route in self._routes.values():
            await route.destination.close()
        self._routes = {}
