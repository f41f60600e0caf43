"""A lean keep-alive HTTP/1.1 POST client for webhooks (llhttp parses the responses).

aiohttp's general client spent ~60% of a worker's CPU per webhook (request objects,
payload registry, cookie jar, tracing hooks, two timers); a webhook needs one pre-built
request head, one write and a status line. Connections are pooled per (host, port, TLS)
and kept idle for our keep-alive or the receiver's `Keep-Alive: timeout=N`, the shorter;
the SSRF guard checks every resolved address before a socket exists for it, and each
address gets its share of the connect timeout. No redirect is followed, no cookie is
kept. Through a forward proxy (proxy.py): plain HTTP requests go to it in absolute form
(webhook.py builds that head), HTTPS is tunnelled with CONNECT (tunnel.py) and TLS runs
inside the tunnel to the destination; the guard still judges the destination.

What a receiver can do to it is bounded: interim 1xx answers are skipped (101 is an
error: nothing asks for an upgrade); heads over HEAD_LIMIT are an error; of a body, the
first BODY_LIMIT bytes are kept and a longer one ends the connection; bytes that answer
no request make the connection unusable. A POST may be sent twice: when a reused
connection turns out closed by the receiver as we wrote (reset before any answer byte),
the request goes once more on a new connection. The receiver may have seen the first;
it dedups on `webhook-id`, as Standard Webhooks asks.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import math
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httptools

from ingestd.destinations.proxy import Proxy, ProxyRules
from ingestd.destinations.ssrf import REFUSED, Address, AddressRefused, Network, refusal
from ingestd.destinations.tunnel import ProxyRefused, tunnel

BODY_LIMIT = 65536
"""Bytes of a response body kept. A longer body is not read on: the request resolves
with its first BODY_LIMIT bytes and the connection is closed, not reused."""
HEAD_LIMIT = 65536
"""Bytes of response heads (status line and headers, interim 1xx ones included) read
before the answer is refused as not HTTP: llhttp buffers a header until it ends."""

ADDRESS_TIMEOUT_MIN = 1.0
"""Seconds one address of several may take to connect, at least (the last gets the rest)."""

Resolve = Callable[[str, int], Awaitable[list[tuple[int, Any]]]]
PoolKey = tuple[str, int, bool]


class Reply:
    """What came back: status, its headers (names lower-cased, repeats joined with ", "),
    the body's start. The attempt log keeps them; a delivery reads a few."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class BadResponse(ConnectionError):
    """The receiver's answer is not valid HTTP/1.1."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[Reply] | None = None
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.headers_done = False
        self.head_bytes = 0
        self.reusable = False
        self.idle_since = 0.0
        self.keep_for = math.inf
        """Seconds the receiver said it keeps an idle connection (`Keep-Alive: timeout=N`)."""
        self.sock: socket.socket | None = None
        self.got_bytes = False

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():  # nothing asked: never reuse it
            self._fail(BadResponse("unsolicited data"))
            return
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._fail(BadResponse(f"invalid HTTP response: {exc!r}"))
            return
        if not self.headers_done:
            self.head_bytes += len(data)
            if self.head_bytes > HEAD_LIMIT:
                self._fail(BadResponse(f"response head over {HEAD_LIMIT} bytes"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.waiter is not None and not self.waiter.done():
            if self.headers_done:  # a body delimited by the connection's end
                self.reusable = False
                self.on_message_complete()
            else:
                self._fail(exc or ConnectionResetError("the receiver closed the connection"))

    # -- llhttp callbacks ----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        field, text = name.decode("latin-1"), value.decode("latin-1")
        known = self.headers.get(field)
        self.headers[field] = text if known is None else f"{known}, {text}"
        if name == b"keep-alive":
            for param in value.split(b","):
                key, _, seconds = param.partition(b"=")
                if key.strip().lower() == b"timeout" and seconds.strip().isdigit():
                    self.keep_for = float(seconds)

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        room = BODY_LIMIT - len(self.body)
        if len(body) <= room:
            self.body += body
            return
        self.body += body[: max(room, 0)]
        waiter = self.waiter  # enough read: answer with it, and drop the rest with the socket
        if waiter is not None and not waiter.done():
            waiter.set_result(Reply(self.parser.get_status_code(), self.headers, bytes(self.body)))
        self.reusable = False
        self.close()

    def on_message_complete(self) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():  # a second answer to one request
            self._fail(BadResponse("unsolicited data"))
            return
        status = self.parser.get_status_code()
        if status == 101:
            self._fail(BadResponse("101 Switching Protocols: no upgrade was asked for"))
        elif 100 <= status < 200:  # interim (100, 102, 103): the answer is still to come
            self.headers = {}
            self.body = bytearray()
            self.headers_done = False
        else:
            self.reusable = self.transport is not None and self.parser.should_keep_alive()
            waiter.set_result(Reply(status, self.headers, bytes(self.body)))

    # -- use -------------------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        self.reusable = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.close()

    def expire(self) -> None:
        self._fail(TimeoutError())

    def send(self, data: bytes) -> asyncio.Future[Reply]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.headers = {}
        self.body = bytearray()
        self.headers_done = False
        self.head_bytes = 0
        self.got_bytes = False
        self.transport.write(data)
        return self.waiter

    def close(self) -> None:
        transport, self.transport = self.transport, None
        if transport is None:
            return
        try:
            transport.abort()
        except RuntimeError:  # its loop is closed: nothing else will close the socket
            if self.sock is not None:
                self.sock.close()


class Http1Client:
    """POSTs over pooled connections, refusing internal addresses before connecting."""

    def __init__(
        self,
        allow: tuple[Network, ...],
        resolve: Resolve | None = None,
        connect_hook: Callable[[Address], None] | None = None,
        keepalive: float = 30.0,
        tls: ssl.SSLContext | None = None,
        proxies: ProxyRules | None = None,
    ) -> None:
        self.allow = allow
        self._resolve = resolve
        self._connect_hook = connect_hook
        self._keepalive = keepalive
        self._idle: dict[PoolKey, list[_Connection]] = {}
        self._tls = tls
        """Certificates are verified against the system's CAs unless a context is given."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._swept = time.monotonic()
        self._proxies = proxies
        self._routes: dict[PoolKey, Proxy | None] = {}

    async def post(
        self, key: PoolKey, request: bytes, timeout: float, connect_timeout: float
    ) -> Reply:
        """Send a complete request (head and body); raises TimeoutError, OSError."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # connections belong to the loop that made them
            self.close()
            self._loop = loop
        deadline = loop.time() + timeout
        if time.monotonic() - self._swept > self._keepalive:
            self._sweep()
        conn = self._reuse(key)
        if conn is not None:
            try:
                return await self._exchange(key, conn, request, deadline)
            except (ConnectionResetError, BrokenPipeError):
                if conn.got_bytes:
                    raise
                # The receiver closed the idle connection as we wrote: once more, anew.
        budget = min(connect_timeout, deadline - loop.time())
        conn = await self._connect(*key, budget)
        return await self._exchange(key, conn, request, deadline)

    async def _exchange(
        self, key: PoolKey, conn: _Connection, request: bytes, deadline: float
    ) -> Reply:
        loop = asyncio.get_running_loop()
        timer = loop.call_at(deadline, conn.expire)
        try:
            reply = await conn.send(request)
        except BaseException:  # failed, timed out or cancelled: the connection is spent
            conn.close()
            raise
        finally:
            timer.cancel()
        if conn.reusable and conn.transport is not None:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(key, []).append(conn)
        else:
            conn.close()
        return reply

    def _reuse(self, key: PoolKey) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if self._fresh(conn, now):
                return conn
            conn.close()
        return None

    def _fresh(self, conn: _Connection, now: float) -> bool:
        """Open, and idle for less than our keep-alive and the receiver's."""
        limit = min(self._keepalive, conn.keep_for)
        return conn.transport is not None and now - conn.idle_since < limit

    def _sweep(self) -> None:
        """Close connections idle past the keep-alive (hosts no longer posted to included)."""
        now = self._swept = time.monotonic()
        for key, idle in list(self._idle.items()):
            keep = [c for c in idle if self._fresh(c, now)]
            for conn in idle:
                if conn not in keep:
                    conn.close()
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    async def _addresses(self, host: str, port: int) -> list[tuple[int, Any]]:
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            family = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
            return [(family, (host, port))]
        if self._resolve is not None:
            return await self._resolve(host, port)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [(family, sockaddr) for family, _t, _p, _c, sockaddr in infos]

    def proxy_for(self, key: PoolKey) -> Proxy | None:
        """The proxy requests for this (host, port, TLS) go through, or None (direct)."""
        if key not in self._routes:
            self._routes[key] = self._proxies.for_target(*key) if self._proxies else None
        return self._routes[key]

    async def check_destination(self, host: str, port: int, budget: float) -> None:
        """Refuse a destination the SSRF guard would refuse, before any proxy is asked:
        a proxy resolves the name again and may pick any of its addresses, so every one
        must be allowed. Raises AddressRefused, TimeoutError, OSError (no address)."""
        end = asyncio.get_running_loop().time() + budget
        await self._judged(host, port, end)

    async def _judged(self, host: str, port: int, end: float) -> None:
        """The destination judged before a proxy is asked; a name that does not resolve
        here is left to the proxy only if the operator said so (ProxyRules.resolves)."""
        try:
            await self._allowed(host, port, end, every=True)
        except socket.gaierror as exc:
            if not (self._proxies and self._proxies.resolves):
                raise socket.gaierror(
                    exc.errno,
                    f"{host} does not resolve here, so the SSRF guard cannot judge it "
                    f"({exc.strerror}); INGESTD_OUTBOUND_PROXY_RESOLVES=true leaves it "
                    "to the proxy",
                ) from exc

    async def _allowed(
        self, host: str, port: int, end: float, every: bool = False
    ) -> list[tuple[int, Any, Address]]:
        """The addresses of host the guard allows (all of them, or AddressRefused if
        `every`); OSError when there are none."""
        try:
            async with asyncio.timeout_at(end):
                found = await self._addresses(host, port)
        except TimeoutError:
            raise TimeoutError(f"resolving {host} timed out") from None
        allowed: list[tuple[int, Any, Address]] = []
        refused: OSError | None = None
        for family, sockaddr in found:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            why = refusal(address, self.allow)
            if why is None:
                allowed.append((family, sockaddr, address))
            else:
                refused = AddressRefused(errno.EACCES, f"{REFUSED}: {address} is {why}")
        if refused is not None and (every or not allowed):
            raise refused
        if not allowed:
            raise OSError(errno.EHOSTUNREACH, f"{host} has no address")
        return allowed

    async def _connect(self, host: str, port: int, tls: bool, budget: float) -> _Connection:
        """Tries each allowed address in turn, each with its share of the budget (a
        blackholed first address must not use it all up). Through a proxy the guard
        judges the destination first; the proxy's own addresses are not judged: the
        operator named it."""
        loop = asyncio.get_running_loop()
        end = loop.time() + budget
        proxy = self.proxy_for((host, port, tls))
        try:
            if proxy is None:
                targets = await self._allowed(host, port, end)
            else:
                await self._judged(host, port, end)
                try:
                    async with asyncio.timeout_at(end):
                        found = await self._addresses(proxy.host, proxy.port)
                except TimeoutError:
                    raise TimeoutError(f"resolving proxy {proxy.host} timed out") from None
                targets = [
                    (f, a, ipaddress.ip_address(str(a[0]).split("%", 1)[0])) for f, a in found
                ]
        except TimeoutError as exc:
            raise TimeoutError(f"{exc} after {budget:g}s") from None
        error: OSError = OSError(errno.EHOSTUNREACH, f"proxy {proxy} has no address")
        for i, (family, sockaddr, address) in enumerate(targets):
            left = end - loop.time()
            if left <= 0:
                break
            later = len(targets) - i - 1
            share = min(left, max(ADDRESS_TIMEOUT_MIN, left / (later + 1))) if later else left
            try:
                async with asyncio.timeout(share):
                    return await self._open(family, sockaddr, address, (host, port, tls), proxy)
            except TimeoutError:  # before OSError: TimeoutError is one
                error = TimeoutError(f"connect to {address} timed out after {share:.3g}s")
            except OSError as exc:
                error = exc
        if isinstance(error, TimeoutError):
            raise TimeoutError(f"connect timed out after {budget:g}s ({error})")
        raise error

    async def _open(
        self, family: int, sockaddr: Any, address: Address, key: PoolKey, proxy: Proxy | None
    ) -> _Connection:
        host, port, tls = key
        if self._connect_hook is not None:
            self._connect_hook(address)
        loop = asyncio.get_running_loop()
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            try:
                await loop.sock_connect(sock, sockaddr)
            except OSError as exc:
                if proxy is None:
                    raise
                why = exc.strerror or str(exc)
                raise ProxyRefused(exc.errno, f"proxy {proxy} unreachable: {why}") from exc
            if proxy is not None and tls:
                await tunnel(sock, proxy, host, port)
            _transport, conn = await loop.create_connection(
                _Connection,
                sock=sock,
                ssl=self._tls_context() if tls else None,
                server_hostname=host if tls else None,
            )
        except BaseException:
            sock.close()
            raise
        conn.sock = sock
        return conn

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
