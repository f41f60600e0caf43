"""Token buckets: the protocol every backend implements, and the in-process one."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol


class LimiterUnavailable(Exception):
    """The rate-limit backend did not answer."""


class Buckets(Protocol):
    """Where token buckets live."""

    async def take(self, key: str, cost: int, rate: float, burst: int) -> tuple[bool, float]:
        """Take `cost` tokens if there are enough: (taken, tokens left). Atomic."""

    async def refund(self, key: str, cost: int, rate: float, burst: int) -> None:
        """Give back `cost` tokens a failed request took (never above the burst). Atomic."""

    async def close(self) -> None: ...


class MemoryBuckets:
    """Buckets in this process: exact, but each process of `--workers N` has its own.

    At most `max_keys` buckets, least recently used dropped first (client IPs churn); a
    dropped bucket comes back full."""

    MAX_KEYS = 100_000

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_keys: int = MAX_KEYS
    ) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def _tokens(self, key: str, rate: float, burst: int, now: float) -> float:
        tokens, then = self._state.get(key, (float(burst), now))
        return min(float(burst), tokens + (now - then) * rate)

    def _store(self, key: str, tokens: float, now: float) -> None:
        self._state[key] = (tokens, now)
        self._state.move_to_end(key)
        while len(self._state) > self._max_keys:
            self._state.popitem(last=False)

    async def take(self, key: str, cost: int, rate: float, burst: int) -> tuple[bool, float]:
        now = self._clock()
        tokens = self._tokens(key, rate, burst, now)
        taken = tokens >= cost
        if taken:
            tokens -= cost
        self._store(key, tokens, now)
        return taken, tokens

    async def refund(self, key: str, cost: int, rate: float, burst: int) -> None:
        if key in self._state:  # else it was dropped, and comes back full anyway
            now = self._clock()
            self._store(key, min(float(burst), self._tokens(key, rate, burst, now) + cost), now)

    def __len__(self) -> int:
        return len(self._state)

    async def close(self) -> None:
        self._state.clear()
