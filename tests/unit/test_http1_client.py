"""The lean webhook client against raw loopback HTTP/1.1 servers that answer in every
framing a receiver may use: content-length, chunked, delimited by close; that close idle
connections; that hang."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from ingestd.config import DestinationConfig, Settings
from ingestd.destinations.http1 import Http1Client
from ingestd.destinations.ssrf import parse_nets
from ingestd.destinations.webhook import WebhookDestination
from ingestd.errors import ConfigError
from ingestd.model import Event, Job

LOOPBACK = parse_nets(["127.0.0.0/8"])
TLS = Path(__file__).parent / "tls"
"""A self-signed certificate for 127.0.0.1 and localhost, valid until 2126, tests only."""
Answer = Callable[[bytes], bytes | None]


class RawServer:
    """Answers each request with `answer(request)`; None = hang; counts connections."""

    def __init__(
        self, answer: Answer, close_after: bool = False, tls: ssl.SSLContext | None = None
    ) -> None:
        self.answer = answer
        self.close_after = close_after
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                reply = self.answer(request)
                if reply is None:
                    await asyncio.sleep(30)
                    return
                writer.write(reply)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def client() -> AsyncIterator[Http1Client]:
    c = Http1Client(LOOPBACK)
    yield c
    c.close()


def post(path: str = "/hook", body: bytes = b"{}") -> bytes:
    return f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body


async def test_content_length_replies_reuse_one_connection(client: Http1Client) -> None:
    reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
    async with RawServer(lambda _r: reply) as server:
        key = ("127.0.0.1", server.port, False)
        for _ in range(3):
            got = await client.post(key, post(), 5, 5)
            assert (got.status, got.body) == (200, b"ok")
    assert server.connections == 1
    assert len(server.requests) == 3


async def test_chunked_and_close_delimited_bodies_are_read_whole(client: Http1Client) -> None:
    chunked = (
        b"HTTP/1.1 503 Busy\r\ntransfer-encoding: chunked\r\nretry-after: 7\r\n\r\n"
        b"4\r\nbusy\r\n5\r\n now!\r\n0\r\n\r\n"
    )
    async with RawServer(lambda _r: chunked) as server:
        got = await client.post(("127.0.0.1", server.port, False), post(), 5, 5)
    assert (got.status, got.body, got.headers["retry-after"]) == (503, b"busy now!", "7")

    until_close = b"HTTP/1.1 500 Oops\r\nconnection: close\r\n\r\nall of it"
    async with RawServer(lambda _r: until_close, close_after=True) as server:
        got = await client.post(("127.0.0.1", server.port, False), post(), 5, 5)
        again = await client.post(("127.0.0.1", server.port, False), post(), 5, 5)
    assert (got.status, got.body) == (500, b"all of it")
    assert again.status == 500
    assert server.connections == 2  # `connection: close` is honoured, not reused


async def test_a_connection_the_receiver_closed_while_idle_is_replaced(
    client: Http1Client,
) -> None:
    # The server answers keep-alive but closes right after: the pooled connection is dead
    # when it is next used, and the request goes out once more on a fresh one.
    reply = b"HTTP/1.1 204 No Content\r\n\r\n"
    async with RawServer(lambda _r: reply, close_after=True) as server:
        key = ("127.0.0.1", server.port, False)
        assert (await client.post(key, post(), 5, 5)).status == 204
        await asyncio.sleep(0.05)
        assert (await client.post(key, post(), 5, 5)).status == 204
    assert server.connections == 2


async def test_a_hanging_receiver_times_out_and_its_connection_is_dropped(
    client: Http1Client,
) -> None:
    async with RawServer(lambda _r: None) as server:
        key = ("127.0.0.1", server.port, False)
        with pytest.raises(TimeoutError):
            await client.post(key, post(), 0.2, 5)
        assert client._idle.get(key, []) == []


async def test_garbage_is_an_error_not_a_status(client: Http1Client) -> None:
    async with RawServer(lambda _r: b"SMTP ready\r\n\r\n") as server:
        with pytest.raises(ConnectionError, match="invalid HTTP response"):
            await client.post(("127.0.0.1", server.port, False), post(), 5, 5)


async def test_webhook_request_head_and_header_injection() -> None:
    settings = Settings(webhook_allow_nets=["127.0.0.0/8"])
    seen: list[bytes] = []

    def answer(request: bytes) -> bytes:
        seen.append(request)
        return b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"

    async with RawServer(answer) as server:
        config = DestinationConfig(
            name="d",
            kind="webhook",
            url=f"http://u:p@127.0.0.1:{server.port}/in?x=1",
            headers={"X-Team": "a8"},
        )
        destination = WebhookDestination(config, settings)
        event = Event(id="e1", source="s", type="t", occurred_at="2026-01-01T00:00:00Z", data={})
        job = Job(id=1, delivery_id="msg_1", destination="d", attempt=1, event=event)
        try:
            attempt = await destination.deliver(job)
        finally:
            await destination.close()
    assert attempt.ok, attempt.error
    head = seen[0].split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("POST /in?x=1 HTTP/1.1\r\n")
    assert f"host: 127.0.0.1:{server.port}" in head
    assert "x-team: a8" in head
    assert "authorization: Basic dTpw" in head
    assert "webhook-id: msg_1" in head

    bad = DestinationConfig(
        name="d", kind="webhook", url="http://127.0.0.1/", headers={"x": "a\r\nhost: evil"}
    )
    with pytest.raises(ConfigError, match="line break"):
        WebhookDestination(bad, settings)


async def test_https_is_verified_and_works_with_a_trusted_certificate() -> None:
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(TLS / "receiver-cert.pem", TLS / "receiver-key.pem")
    trusting = ssl.create_default_context(cafile=str(TLS / "receiver-cert.pem"))
    reply = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n"
    async with RawServer(lambda _r: reply, tls=server_tls) as server:
        key = ("127.0.0.1", server.port, True)
        client = Http1Client(LOOPBACK, tls=trusting)
        try:
            assert (await client.post(key, post(), 5, 5)).status == 202
            assert (await client.post(key, post(), 5, 5)).status == 202
        finally:
            client.close()
        # The system's CAs do not know this certificate: refused, nothing is sent.
        default = Http1Client(LOOPBACK)
        try:
            with pytest.raises(ssl.SSLCertVerificationError):
                await default.post(key, post(), 5, 5)
        finally:
            default.close()
    assert server.connections == 1  # the refused handshake never became a connection
    assert len(server.requests) == 2


async def test_connections_idle_past_the_keepalive_are_closed() -> None:
    reply = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    client = Http1Client(LOOPBACK, keepalive=0.2)
    try:
        async with RawServer(lambda _r: reply) as first, RawServer(lambda _r: reply) as second:
            await client.post(("127.0.0.1", first.port, False), post(), 5, 5)
            idle = client._idle[("127.0.0.1", first.port, False)][0]
            await asyncio.sleep(0.3)
            # A post to another host sweeps the first host's stale connection away.
            await client.post(("127.0.0.1", second.port, False), post(), 5, 5)
            assert idle.transport is None
            assert ("127.0.0.1", first.port, False) not in client._idle
    finally:
        client.close()
