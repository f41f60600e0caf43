"""One HTTP pool per process (and allow-list), shared by the HTTP destinations.

It holds the lean client webhooks post with (http1.py) and an aiohttp session for
SendGrid's API. Connections are reused per host across destinations; per-destination
concurrency is capped by the worker (`max_in_flight`), so neither is bounded here. Both
check addresses with the SSRF guard: http1 before each connect, aiohttp in the
connector's socket factory.
"""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from ingestd.destinations.http1 import Http1Client, Resolve
from ingestd.destinations.ssrf import (
    Address,
    Network,
    guarded_socket_factory,
    parse_nets,
)

USER_AGENT = "ingestd-webhooks/1"
MAX_RETRY_AFTER = 24 * 3600.0


class HttpPool:
    """A lazily created ClientSession, shared by the destinations that hold this pool."""

    def __init__(
        self,
        allow: tuple[Network, ...],
        resolver: Any = None,
        connect_hook: Callable[[Address], None] | None = None,
    ) -> None:
        self.allow = allow
        self._resolver = resolver
        self._connect_hook = connect_hook
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.users = 0
        self.client = Http1Client(allow, _resolve_with(resolver), connect_hook)
        """The lean client webhooks post with (same guard, same resolver)."""

    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            connector = aiohttp.TCPConnector(
                limit=0,
                limit_per_host=0,
                ttl_dns_cache=30,
                keepalive_timeout=30,
                resolver=self._resolver,
                socket_factory=guarded_socket_factory(self.allow, self._connect_hook),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"user-agent": USER_AGENT},
                auto_decompress=False,
                trust_env=False,
            )
            self._loop = loop
        return self._session

    async def close(self) -> None:
        self.client.close()
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


def _resolve_with(resolver: Any) -> Resolve | None:
    """An aiohttp resolver as the lean client's resolve function."""
    if resolver is None:
        return None

    async def resolve(host: str, port: int) -> list[tuple[int, Any]]:
        found = await resolver.resolve(host, port, socket.AF_UNSPEC)
        return [(r["family"], (r["host"], r["port"])) for r in found]

    return resolve


_pools: dict[tuple[str, ...], HttpPool] = {}


def acquire_pool(allow_nets: list[str]) -> HttpPool:
    key = tuple(sorted(allow_nets))
    pool = _pools.get(key)
    if pool is None:
        pool = _pools[key] = HttpPool(parse_nets(allow_nets))
    pool.users += 1
    return pool


async def release_pool(pool: HttpPool) -> None:
    pool.users -= 1
    if pool.users <= 0:
        for key, known in list(_pools.items()):
            if known is pool:
                del _pools[key]
        await pool.close()


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped at a day."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return min(max(0.0, when - (now or time.time())), MAX_RETRY_AFTER)


async def snippet(response: aiohttp.ClientResponse, limit: int = 200) -> str:
    """The start of a response body, for an error message."""
    try:
        raw = await response.content.read(limit)
    except (aiohttp.ClientError, TimeoutError):
        return ""
    return raw.decode("utf-8", "replace").strip()
