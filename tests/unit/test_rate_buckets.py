"""Token buckets counted in events: refill, burst, Retry-After, per-key policy, fail modes."""

from __future__ import annotations

import math
import uuid

import pytest

from ingestd.api.auth import Principal
from ingestd.errors import ConfigError
from ingestd.limits import buckets_from_url
from ingestd.limits.buckets import LimiterUnavailable, MemoryBuckets
from ingestd.limits.policy import RateLimits
from support import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_bucket_spends_events_and_refills_at_the_rate() -> None:
    clock = Clock()
    limits = RateLimits(MemoryBuckets(clock), rate=10.0, burst=20)
    first = await limits.check("k", 15, None)
    assert first is not None and first.allowed and first.remaining == 5
    refused = await limits.check("k", 10, None)
    assert refused is not None and not refused.allowed
    assert refused.retry_after == pytest.approx(0.5)  # 5 tokens missing at 10/s
    assert refused.remaining == 5  # a refusal takes nothing
    clock.now += 0.5
    again = await limits.check("k", 10, None)
    assert again is not None and again.allowed and again.remaining == 0
    clock.now += 100
    full = await limits.check("k", 1, None)
    assert full is not None and full.remaining == 19  # never more than the burst
    other = await limits.check("other", 20, None)
    assert other is not None and other.allowed  # each identity has its own bucket


async def test_more_events_than_the_burst_can_never_pass() -> None:
    limits = RateLimits(MemoryBuckets(Clock()), rate=1.0, burst=5)
    decision = await limits.check("k", 6, None)
    assert decision is not None and not decision.allowed and math.isinf(decision.retry_after)


async def test_a_key_overrides_the_default_rate_and_burst() -> None:
    limits = RateLimits(MemoryBuckets(Clock()), rate=0.0, burst=None)
    assert await limits.check("anon", 1000, None) is None  # rate 0: not limited
    key = Principal(key_id="a", tenant="t", source=None, scopes=frozenset(), rate=2.0)
    decision = await limits.check("key:a", 2, key)
    assert decision is not None and decision.allowed and decision.limit == 2
    assert limits.policy(key) == (2.0, 2)


async def test_headers_say_limit_remaining_reset_and_policy() -> None:
    limits = RateLimits(MemoryBuckets(Clock()), rate=2.0, burst=10)
    decision = await limits.check("k", 4, None)
    assert decision is not None
    assert dict(decision.headers()) == {
        b"ratelimit-limit": b"10",
        b"ratelimit-remaining": b"6",
        b"ratelimit-reset": b"2",
        b"ratelimit-policy": b"10;w=5",
    }


async def test_an_unreachable_redis_fails_open_or_closed() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    fail_open = RateLimits(buckets_from_url(url, "p:"), rate=1.0, burst=1)
    fail_closed = RateLimits(buckets_from_url(url, "p:"), rate=1.0, burst=1, fail_closed=True)
    try:
        assert await fail_open.check("k", 1, None) is None
        assert await fail_open.check("k", 1, None) is None  # within the reconnect pause
        with pytest.raises(LimiterUnavailable):
            await fail_closed.check("k", 1, None)
    finally:
        await fail_open.close()
        await fail_closed.close()


async def test_backends_are_chosen_by_url() -> None:
    assert isinstance(buckets_from_url("memory://", "p:"), MemoryBuckets)
    redis = buckets_from_url("redis://127.0.0.1:6379/0", "p:")
    assert type(redis).__name__ == "RedisBuckets"
    await redis.close()
    with pytest.raises(ConfigError, match="memory:// or redis://"):
        buckets_from_url("memcached://x", "p:")


async def test_an_unset_burst_holds_at_least_one_full_batch() -> None:
    limits = RateLimits(MemoryBuckets(Clock()), rate=10.0, burst=None, min_burst=1000)
    assert limits.policy(None) == (10.0, 1000)
    decision = await limits.check("k", 1000, None)
    assert decision is not None and decision.allowed


async def test_a_refund_gives_tokens_back_up_to_the_burst() -> None:
    limits = RateLimits(MemoryBuckets(Clock()), rate=0.001, burst=3)
    spent = await limits.check("k", 3, None)
    assert spent is not None and spent.allowed and spent.remaining == 0
    await limits.refund("k", 2, None)
    again = await limits.check("k", 2, None)
    assert again is not None and again.allowed and again.remaining == 0
    await limits.refund("k", 10, None)  # more than was taken: capped at the burst
    full = await limits.check("k", 3, None)
    assert full is not None and full.allowed
    over = await limits.check("k", 1, None)
    assert over is not None and not over.allowed


async def test_memory_buckets_drop_the_least_recently_used_beyond_max_keys() -> None:
    buckets = MemoryBuckets(Clock(), max_keys=3)
    for key in ("a", "b", "c"):
        assert (await buckets.take(key, 5, 0.001, 5))[0]
    assert (await buckets.take("a", 1, 0.001, 5)) == (False, pytest.approx(0))  # a is recent
    assert (await buckets.take("d", 5, 0.001, 5))[0]
    assert len(buckets) == 3
    assert (await buckets.take("b", 5, 0.001, 5))[0]  # b was dropped: it came back full
    assert not (await buckets.take("a", 1, 0.001, 5))[0]  # a was kept, still empty
    assert len(buckets) == 3


async def test_redis_buckets_refund_atomically(redis_url: str) -> None:
    limits = RateLimits(buckets_from_url(redis_url, f"t:{uuid.uuid4().hex}:"), rate=0.001, burst=2)
    try:
        spent = await limits.check("k", 2, None)
        assert spent is not None and spent.allowed
        refused = await limits.check("k", 1, None)
        assert refused is not None and not refused.allowed
        await limits.refund("k", 1, None)
        again = await limits.check("k", 1, None)
        assert again is not None and again.allowed and again.remaining == 0
        await limits.refund("never-took", 1, None)  # no bucket: nothing to give back
        fresh = await limits.check("never-took", 2, None)
        assert fresh is not None and fresh.allowed and fresh.remaining == 0
    finally:
        await limits.close()
