"""Token buckets in Redis: one atomic Lua script per check, so every API process of a
deployment draws from the same bucket. Redis's own clock is used, not the processes'."""

from __future__ import annotations

import time

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ingestd.limits.buckets import LimiterUnavailable

TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local taken = 0
if tokens >= cost then
  tokens = tokens - cost
  taken = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {taken, tostring(tokens)}
"""

REFUND = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
tokens = math.min(burst, tokens + math.max(0, now - at) * rate + cost)
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
return 1
"""
"""Give tokens back to a bucket that still exists (an expired one is full anyway)."""

RECONNECT_AFTER = 1.0
"""Seconds to answer 'unavailable' without trying, after Redis failed (no per-request
connect timeouts while it is down)."""


class RedisBuckets:
    """Buckets under `prefix` + caller identity, expiring once full."""

    def __init__(self, url: str, prefix: str, *, timeout: float = 0.5) -> None:
        self._client = aioredis.Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._script = self._client.register_script(TAKE)
        self._refund = self._client.register_script(REFUND)
        self._prefix = prefix
        self._down_until = 0.0

    async def take(self, key: str, cost: int, rate: float, burst: int) -> tuple[bool, float]:
        if self._down_until and time.monotonic() < self._down_until:
            raise LimiterUnavailable("Redis did not answer a moment ago")
        try:
            taken, tokens = await self._script(
                keys=[self._prefix + key], args=[repr(rate), burst, cost]
            )
        except (RedisError, OSError) as exc:
            self._down_until = time.monotonic() + RECONNECT_AFTER
            raise LimiterUnavailable(f"Redis: {exc}") from exc
        self._down_until = 0.0
        return bool(taken), float(tokens)

    async def refund(self, key: str, cost: int, rate: float, burst: int) -> None:
        if self._down_until and time.monotonic() < self._down_until:
            raise LimiterUnavailable("Redis did not answer a moment ago")
        try:
            await self._refund(keys=[self._prefix + key], args=[repr(rate), burst, cost])
        except (RedisError, OSError) as exc:
            self._down_until = time.monotonic() + RECONNECT_AFTER
            raise LimiterUnavailable(f"Redis: {exc}") from exc

    async def close(self) -> None:
        await self._client.aclose()
