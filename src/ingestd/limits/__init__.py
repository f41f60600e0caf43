"""Rate limits: the policy (per key or client, counted in events; policy.py) and its token
buckets, chosen by URL: this process (`memory://`) or Redis (`redis://…`, shared by every
process; imported only then). Used by the HTTP layer, never importing it."""

from __future__ import annotations

from ingestd.errors import ConfigError
from ingestd.limits.buckets import Buckets, MemoryBuckets


def buckets_from_url(url: str, prefix: str) -> Buckets:
    """memory:// or redis://, rediss://, unix:// (Redis imported only then)."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "memory":
        return MemoryBuckets()
    if scheme in ("redis", "rediss", "unix"):
        try:
            from ingestd.limits.redis_buckets import RedisBuckets
        except ImportError as exc:
            raise ConfigError(
                "INGESTD_RATE_LIMIT_URL is a Redis URL but the redis package is missing: "
                "pip install 'ingestd[redis]'"
            ) from exc
        return RedisBuckets(url, prefix)
    raise ConfigError(f"INGESTD_RATE_LIMIT_URL must be memory:// or redis://…, not {url!r}")
