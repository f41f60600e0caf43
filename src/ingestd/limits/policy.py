"""Rate limits: a token bucket per API key (per client IP without keys), counted in events.

A request costs as many tokens as it carries events; without enough tokens it is refused
with 429 and stores nothing. A request that ends in a 5xx (overload, store unavailable)
gets its tokens back, so the client's retry is not refused for the server's failure.
Buckets live in this process (`memory://`) or in Redis (`redis://…`, one limit shared by
every process). An unreachable Redis lets requests through (counted in
ingestd_rate_limit_backend_errors) unless INGESTD_RATE_LIMIT_FAIL=closed.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import Counter

from ingestd.config import Settings
from ingestd.limits import buckets_from_url
from ingestd.limits.buckets import Buckets, LimiterUnavailable
from ingestd.obs.metrics import REGISTRY

log = logging.getLogger("ingestd.limits")

LIMITED = Counter(
    "ingestd_rate_limited_events",
    "Events refused with 429 because their key (or client) was over its rate",
    registry=REGISTRY,
)
BACKEND_ERRORS = Counter(
    "ingestd_rate_limit_backend_errors",
    "Rate-limit checks the backend could not answer (failed open or closed)",
    ["outcome"],
    registry=REGISTRY,
)


class Caller(Protocol):
    """Who is asking, as far as limits go: an API key's own rate and burst, if any."""

    @property
    def rate(self) -> float | None: ...

    @property
    def burst(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: int
    """The bucket size (burst)."""
    remaining: int
    retry_after: float
    """Seconds until the refused cost fits (0 when allowed; inf when it never can)."""
    reset: float
    """Seconds until the bucket is full again."""
    window: float
    """Seconds a full bucket takes to refill: the policy's window."""

    def headers(self) -> list[tuple[bytes, bytes]]:
        """RateLimit-* fields (draft-ietf-httpapi-ratelimit-headers)."""
        return [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(math.ceil(self.reset)).encode()),
            (b"ratelimit-policy", f"{self.limit};w={math.ceil(self.window)}".encode()),
        ]


class RateLimits:
    """The limits of one process: defaults, per-key overrides, the backend, fail policy."""

    def __init__(
        self,
        buckets: Buckets,
        rate: float,
        burst: int | None,
        *,
        fail_closed: bool = False,
        min_burst: int = 1,
    ) -> None:
        self.buckets = buckets
        self.rate = rate
        self.burst = burst
        self.fail_closed = fail_closed
        self.min_burst = min_burst
        """An unset burst is at least this (one full batch), so no valid batch is refused
        for good."""
        self._warned_at = -math.inf

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits | None:
        """None when no limit is configured (the default): nothing is counted."""
        if settings.rate_limit <= 0 and not any(k.rate for k in settings.api_keys):
            return None
        buckets = buckets_from_url(settings.rate_limit_url, settings.rate_limit_prefix)
        return cls(
            buckets,
            settings.rate_limit,
            settings.rate_limit_burst,
            fail_closed=settings.rate_limit_fail == "closed",
            min_burst=settings.max_batch,
        )

    def policy(self, principal: Caller | None) -> tuple[float, int]:
        rate = self.rate
        burst = self.burst
        if principal is not None:
            rate = principal.rate if principal.rate is not None else rate
            burst = principal.burst if principal.burst is not None else burst
        return rate, burst if burst is not None else max(self.min_burst, math.ceil(rate))

    async def check(self, identity: str, cost: int, principal: Caller | None) -> Decision | None:
        """The decision for `cost` events; None when this caller is not limited or the
        backend failed open. Raises LimiterUnavailable when it fails closed."""
        rate, burst = self.policy(principal)
        if rate <= 0:
            return None
        window = burst / rate
        if cost > burst:
            return Decision(False, burst, 0, math.inf, window, window)
        try:
            taken, tokens = await self.buckets.take(identity, cost, rate, burst)
        except LimiterUnavailable as exc:
            outcome = "closed" if self.fail_closed else "open"
            BACKEND_ERRORS.labels(outcome).inc()
            now = time.monotonic()
            if now - self._warned_at > 10.0:
                self._warned_at = now
                log.warning("rate limiter unavailable, failing %s: %s", outcome, exc)
            if self.fail_closed:
                raise
            return None
        reset = (burst - tokens) / rate
        if taken:
            return Decision(True, burst, math.floor(tokens), 0.0, reset, window)
        LIMITED.inc(cost)
        return Decision(False, burst, math.floor(tokens), (cost - tokens) / rate, reset, window)

    async def refund(self, identity: str, cost: int, principal: Caller | None) -> None:
        """Give back the tokens of an allowed request that ended in a 5xx: the server
        failed, so the client's retry must not meet a 429. Best effort."""
        rate, burst = self.policy(principal)
        try:
            await self.buckets.refund(identity, cost, rate, burst)
        except LimiterUnavailable as exc:
            BACKEND_ERRORS.labels("refund-lost").inc()
            log.debug("rate limiter unavailable, refund lost: %s", exc)

    async def close(self) -> None:
        await self.buckets.close()
