"""HTTP/1.1 for asyncio on the standard library's streams: keep-alive, no dependency.

The SDK sends a few small POSTs to one server and reads small JSON answers, so a pool of
idle connections and a strict reader of the answer (Content-Length, chunked, or until
close) is all it needs; aiohttp would pull a server-sized dependency tree into every
application that only emits events.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from ingestd_client.policy import Reply
from ingestd_client.transport import Endpoint, TransportError, describe

MAX_HEAD = 64 * 1024
"""Bytes of status line and headers accepted in one answer."""
MAX_BODY = 8 * 1024 * 1024
"""An answer body larger than this is refused: ingestd's answers are a few KiB."""
MAX_IDLE = 4
"""Idle connections kept for reuse; AsyncClient has one sender plus concurrent send()s."""
STALE = (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError)


class ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.1 answer we can read."""


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def abort(self) -> None:
        # abort(), not close(): nothing is left worth flushing, and it works from a
        # cancelled task without awaiting.
        with contextlib.suppress(RuntimeError):  # its loop is already closed
            self.writer.transport.abort()


class AsyncTransport:
    """Keep-alive connections opened on first use inside the running loop."""

    def __init__(self, endpoint: Endpoint, headers: dict[str, str], timeout: float) -> None:
        self._endpoint = endpoint
        self._timeout = timeout
        self._idle: list[_Connection] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        host = endpoint.host if ":" not in endpoint.host else f"[{endpoint.host}]"
        default = 443 if endpoint.secure else 80
        authority = host if endpoint.port == default else f"{host}:{endpoint.port}"
        lines = [f"Host: {authority}"] + [f"{k}: {v}" for k, v in headers.items()]
        self._head = ("\r\n".join(lines) + "\r\n").encode("latin-1")

    async def post(self, path: str, body: bytes, timeout: float | None = None) -> Reply:
        """POST body; the answer, or TransportError after at most `timeout` seconds."""
        timeout = self._timeout if timeout is None else max(0.05, min(timeout, self._timeout))
        self._adopt_loop()
        try:
            async with asyncio.timeout(timeout):
                return await self._post(path, body)
        except TimeoutError as exc:
            raise TransportError(f"no answer within {timeout:.3g} s") from exc
        except (
            OSError,
            ProtocolError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ) as exc:
            raise TransportError(describe(exc)) from exc

    async def _post(self, path: str, body: bytes) -> Reply:
        # A kept-alive connection the server has since closed fails at once; one fresh
        # try is safe because every event carries its id.
        while self._idle:
            conn = self._idle.pop()
            try:
                return await self._exchange(conn, path, body)
            except STALE:
                conn.abort()
        return await self._exchange(await self._open(), path, body)

    async def _open(self) -> _Connection:
        ep = self._endpoint
        context = ssl.create_default_context() if ep.secure else None
        reader, writer = await asyncio.open_connection(
            ep.host, ep.port, ssl=context, limit=MAX_HEAD
        )
        return _Connection(reader, writer)

    async def _exchange(self, conn: _Connection, path: str, body: bytes) -> Reply:
        reusable = False
        try:
            request = f"POST {self._endpoint.prefix}{path} HTTP/1.1\r\n".encode("latin-1")
            length = f"Content-Length: {len(body)}\r\n\r\n".encode("latin-1")
            conn.writer.write(b"".join((request, self._head, length, body)))
            await conn.writer.drain()
            reply, reusable = await _read_reply(conn.reader)
            return reply
        finally:
            if reusable and len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
            elif not reusable:
                conn.abort()

    def _adopt_loop(self) -> None:
        """Connections belong to the loop that opened them; another loop starts afresh."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._drop_idle()
            self._loop = loop

    def _drop_idle(self) -> None:
        while self._idle:
            self._idle.pop().abort()

    async def close(self) -> None:
        self._drop_idle()


async def _read_reply(reader: asyncio.StreamReader) -> tuple[Reply, bool]:
    """The final answer (interim 1xx skipped) and whether the connection can be reused."""
    while True:
        version, status, headers = await _read_head(reader)
        if not 100 <= status < 200:
            break
        if status == 101:
            raise ProtocolError("the server switched protocols")
    keep = version == "HTTP/1.1"
    connection = headers.get("connection", "").lower()
    if "close" in connection:
        keep = False
    elif "keep-alive" in connection:
        keep = True
    if status in (204, 304):
        return Reply(status, headers, b""), keep
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return Reply(status, headers, await _read_chunked(reader)), keep
    if "content-length" in headers:
        raw = headers["content-length"]
        if not raw.isascii() or not raw.isdigit():
            raise ProtocolError(f"bad Content-Length {raw!r}")
        size = int(raw)
        if size > MAX_BODY:
            raise ProtocolError(f"answer of {size} bytes is over the {MAX_BODY} limit")
        return Reply(status, headers, await reader.readexactly(size)), keep
    data = await reader.read(MAX_BODY + 1)  # no length: the body runs to the close
    while len(data) <= MAX_BODY and (more := await reader.read(MAX_BODY + 1 - len(data))):
        data += more
    if len(data) > MAX_BODY:
        raise ProtocolError(f"answer over the {MAX_BODY} byte limit")
    return Reply(status, headers, data), False


async def _read_head(reader: asyncio.StreamReader) -> tuple[str, int, dict[str, str]]:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise ProtocolError(f"answer head over {MAX_HEAD} bytes") from exc
    status_line, *fields = head[:-4].decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise ProtocolError(f"not an HTTP/1 status line: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for field in fields:
        name, sep, value = field.partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(f"malformed header line {field[:80]!r}")
        key = name.lower()
        value = value.strip()
        # Repeated fields join with commas (RFC 9110 5.3), as http.client reports them.
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return parts[0], int(parts[1]), headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line[:-2].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
        if size < 0 or len(body) + size > MAX_BODY:
            raise ProtocolError(f"answer over the {MAX_BODY} byte limit")
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, ignored
                pass
            return bytes(body)
        body += await reader.readexactly(size)
        if await reader.readexactly(2) != b"\r\n":
            raise ProtocolError("chunk not followed by CRLF")
