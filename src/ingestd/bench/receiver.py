"""The built-in loopback receiver for end-to-end runs: a minimal HTTP/1.1 webhook endpoint.

It answers every POST with 204 (after `delay` seconds, to play a slow downstream), and notes
when each event id (the `id` of the JSON body; `webhook-id` when the body has none) first
arrived. The bench joins those times with the times the 202s came back.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import cast

import msgspec


class _Body(msgspec.Struct):
    id: str | None = None


_decode = msgspec.json.Decoder(_Body).decode
_REPLY = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"


class Receiver:
    """Delivery times by event id, from a server on 127.0.0.1."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        delay: float = 0.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.delay = delay
        self.tls = tls
        """Serve HTTPS with this context (the throughput benchmark through CONNECT)."""
        self.first: dict[str, float] = {}
        self.deliveries = 0
        self.redeliveries = 0
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}/hook"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # A backlog for every connection a worker opens at once (512 in the throughput
        # run): with asyncio's 100, TLS handshakes fill the queue and SYNs wait a second.
        self.server = await loop.create_server(
            lambda: _Conn(self), self.host, self.port, ssl=self.tls, backlog=1024
        )
        sock = self.server.sockets[0]
        self.port = int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    def delivered(self, event_id: str, when: float) -> None:
        self.deliveries += 1
        if event_id in self.first:
            self.redeliveries += 1
        else:
            self.first[event_id] = when


class _Conn(asyncio.Protocol):
    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self.transport: asyncio.Transport | None = None
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end].lower()
            length = 0
            i = head.find(b"\ncontent-length:")
            if i >= 0:
                j = head.find(b"\r", i)
                length = int(head[i + 16 : j if j >= 0 else len(head)])
            if len(buf) < end + 4 + length:
                break
            body = buf[end + 4 : end + 4 + length]
            buf = buf[end + 4 + length :]
            self.request(head, body)
        self.buf = buf

    def request(self, head: bytes, body: bytes) -> None:
        now = time.monotonic()
        event_id: str | None = None
        try:
            event_id = _decode(body).id
        except (msgspec.DecodeError, msgspec.ValidationError):
            event_id = None
        if event_id is None:
            i = head.find(b"\nwebhook-id:")
            if i >= 0:
                j = head.find(b"\r", i)
                event_id = head[i + 12 : j if j >= 0 else len(head)].strip().decode()
        if event_id is not None:
            self.receiver.delivered(event_id, now)
        if self.receiver.delay > 0:
            asyncio.get_running_loop().call_later(self.receiver.delay, self.reply)
        else:
            self.reply()

    def reply(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_REPLY)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
