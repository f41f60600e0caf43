"""One HTTP pool per process (and outbound settings), shared by the HTTP destinations.

It holds the lean client webhooks post with (http1.py) and aiohttp sessions for
SendGrid's API. Connections are reused per host across destinations; per-destination
concurrency is capped by the worker (`max_in_flight`), so neither is bounded here. Both
check addresses with the SSRF guard: http1 before each connect, aiohttp in the
connector's socket factory, or, through a proxy, `Http1Client.check_destination` before
the request (the proxied session's sockets go to the proxy the operator named). Both
verify TLS with one context: the system's CAs plus INGESTD_CA_BUNDLE.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from ingestd.config import Settings
from ingestd.destinations.http1 import Http1Client, Resolve
from ingestd.destinations.proxy import ProxyRules, proxy_rules
from ingestd.destinations.ssrf import (
    Address,
    Network,
    guarded_socket_factory,
    open_socket_factory,
    parse_nets,
)
from ingestd.errors import ConfigError

log = logging.getLogger("ingestd.outbound")

USER_AGENT = "ingestd-webhooks/1"
MAX_RETRY_AFTER = 24 * 3600.0


class HttpPool:
    """Lazily created ClientSessions, shared by the destinations that hold this pool."""

    def __init__(
        self,
        allow: tuple[Network, ...],
        resolver: Any = None,
        connect_hook: Callable[[Address], None] | None = None,
        proxies: ProxyRules | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.allow = allow
        self._resolver = resolver
        self._connect_hook = connect_hook
        self.tls = tls or tls_context(None)
        self.proxies = proxies or ProxyRules()
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.users = 0
        self.client = Http1Client(
            allow, _resolve_with(resolver), connect_hook, tls=self.tls, proxies=self.proxies
        )
        """The lean client webhooks post with (same guard, resolver, proxies and CAs)."""

    def session(self, proxied: bool = False) -> aiohttp.ClientSession:
        """The direct session (every address guarded) or the one whose requests all go
        through a proxy (its sockets reach only the proxies the operator named)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._sessions.clear()  # bound to a finished loop: nothing can close them now
            self._loop = loop
        session = self._sessions.get(proxied)
        if session is None or session.closed:
            factory = (
                open_socket_factory(self._connect_hook)
                if proxied
                else guarded_socket_factory(self.allow, self._connect_hook)
            )
            connector = aiohttp.TCPConnector(
                limit=0,
                limit_per_host=0,
                ttl_dns_cache=30,
                keepalive_timeout=30,
                resolver=self._resolver,
                socket_factory=factory,
                ssl=self.tls,
            )
            session = self._sessions[proxied] = aiohttp.ClientSession(
                connector=connector,
                headers={"user-agent": USER_AGENT},
                auto_decompress=False,
                trust_env=False,  # proxies come from ProxyRules, read once at start
            )
        return session

    async def close(self) -> None:
        self.client.close()
        for session in self._sessions.values():
            if not session.closed:
                await session.close()
        self._sessions.clear()


def tls_context(ca_bundle: str | None) -> ssl.SSLContext:
    """The system's CAs (OpenSSL's defaults: SSL_CERT_FILE / SSL_CERT_DIR when set), plus
    the PEM certificates in `ca_bundle`: the operator's own CA, e.g. an inspecting proxy's."""
    context = ssl.create_default_context()
    if ca_bundle:
        try:
            context.load_verify_locations(cafile=ca_bundle)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"INGESTD_CA_BUNDLE: cannot load {ca_bundle}: {exc}") from exc
    return context


def _resolve_with(resolver: Any) -> Resolve | None:
    """An aiohttp resolver as the lean client's resolve function."""
    if resolver is None:
        return None

    async def resolve(host: str, port: int) -> list[tuple[int, Any]]:
        found = await resolver.resolve(host, port, socket.AF_UNSPEC)
        return [(r["family"], (r["host"], r["port"])) for r in found]

    return resolve


_pools: dict[tuple[Any, ...], HttpPool] = {}


def acquire_pool(settings: Settings) -> HttpPool:
    """The pool for these outbound settings (allow-list, proxies, CA bundle)."""
    proxies = proxy_rules(
        settings.outbound_proxy,
        settings.outbound_no_proxy,
        resolves=settings.outbound_proxy_resolves,
    )
    ca_bundle = str(settings.ca_bundle) if settings.ca_bundle else None
    key = (tuple(sorted(settings.webhook_allow_nets)), proxies, ca_bundle)
    pool = _pools.get(key)
    if pool is None:
        tls = tls_context(ca_bundle)
        pool = _pools[key] = HttpPool(
            parse_nets(settings.webhook_allow_nets), proxies=proxies, tls=tls
        )
        if proxies:
            log.info("outbound HTTP: %s", proxies.describe())
        if ca_bundle:
            log.info("outbound TLS: system CAs and %s", ca_bundle)
    pool.users += 1
    return pool


async def release_pool(pool: HttpPool) -> None:
    pool.users -= 1
    if pool.users <= 0:
        for key, known in list(_pools.items()):
            if known is pool:
                del _pools[key]
        await pool.close()


def certificate_error(host: str, exc: BaseException) -> str:
    """A failed certificate check, said so that the operator knows what to look at.

    It is retried on the destination's schedule like any failure (the breaker bounds how
    often): a receiver's expired or misissued certificate is mended on its side, a
    missing CA by INGESTD_CA_BUNDLE and a restart, and the events then arrive without a
    replay."""
    why = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc)
    return (
        f"TLS certificate of {host} not accepted: {why} (is its CA, or the inspecting "
        "proxy's, in INGESTD_CA_BUNDLE?)"
    )


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
