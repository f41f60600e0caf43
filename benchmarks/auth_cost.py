"""What authentication and rate limiting add to one ingest request, in-process.

    python -m benchmarks.auth_cost [--redis redis://127.0.0.1:6379/15]

Times Keyring.authenticate (SHA-256 of the presented key, one dict lookup, one
compare_digest) and RateLimits.check against the in-process buckets (and Redis if given),
each over many calls, and prints microseconds per call. With no key and no limit
configured the ingest handler skips both (two `is None` tests).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid

from ingestd.api.auth import Keyring
from ingestd.config import ApiKeyConfig
from ingestd.limits.policy import MemoryBuckets, RateLimits, buckets_from_url

KEY = "k-bench-0123456789abcdef"


def per_call(seconds: float, calls: int) -> str:
    return f"{seconds / calls * 1e6:8.2f} µs/call"


def time_authenticate(calls: int) -> float:
    keys = [ApiKeyConfig(id=f"k{i}", key=f"{KEY}-{i}") for i in range(1000)]
    keyring = Keyring([*keys, ApiKeyConfig(id="bench", key=KEY)])
    headers = {b"content-type": b"application/json", b"authorization": f"Bearer {KEY}".encode()}
    started = time.perf_counter()
    for _ in range(calls):
        keyring.authenticate(headers)
    return time.perf_counter() - started


async def time_check(limits: RateLimits, calls: int, identities: int) -> float:
    names = [f"key:{i}" for i in range(identities)]
    started = time.perf_counter()
    for n in range(calls):
        await limits.check(names[n % identities], 1, None)
    return time.perf_counter() - started


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--redis", help="also time the Redis buckets at this URL")
    args = parser.parse_args()
    seconds = time_authenticate(args.calls)
    print(f"Keyring.authenticate (1001 keys)      {per_call(seconds, args.calls)}")
    memory = RateLimits(MemoryBuckets(), rate=1e9, burst=10**9)
    seconds = await time_check(memory, args.calls, 1000)
    print(f"RateLimits.check, memory (1000 keys)  {per_call(seconds, args.calls)}")
    if args.redis:
        prefix = f"ingestd-bench:{uuid.uuid4().hex}:"
        redis = RateLimits(buckets_from_url(args.redis, prefix), rate=1e9, burst=10**9)
        calls = args.calls // 20
        seconds = await time_check(redis, calls, 1000)
        print(f"RateLimits.check, Redis (1000 keys)   {per_call(seconds, calls)} (one round trip)")
        await redis.close()


if __name__ == "__main__":
    asyncio.run(main())
