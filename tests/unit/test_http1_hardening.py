"""The lean webhook client against loopback receivers that misbehave: interim 1xx
answers, bytes nobody asked for, endless heads and bodies, blackholed addresses."""

from __future__ import annotations

import asyncio
import gc
import socket
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from ingestd.destinations.http1 import Http1Client
from ingestd.destinations.ssrf import parse_nets

LOOPBACK = parse_nets(["127.0.0.0/8"])
Scene = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class Receiver:
    """Runs `scene(reader, writer, n)` for the n-th connection (from 0); counts them."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.connections = 0
        self.closed = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Receiver:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def key(self) -> tuple[str, int, bool]:
        return ("127.0.0.1", self.port, False)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        n = self.connections
        self.connections += 1
        try:
            await self.scene(reader, writer, n)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed += 1
            writer.close()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


def post(body: bytes = b"{}") -> bytes:
    return f"POST /hook HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body


@pytest.fixture
async def client() -> AsyncIterator[Http1Client]:
    c = Http1Client(LOOPBACK)
    yield c
    c.close()


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def test_interim_1xx_answers_are_skipped_for_the_final_one(client: Http1Client) -> None:
    async def scene(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)  # the interim answer arrives alone, the rest later
        writer.write(
            b"HTTP/1.1 102 Processing\r\n\r\n"
            b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\ncontent-type: text/x\r\n\r\n"
            b"HTTP/1.1 500 Oops\r\ncontent-length: 4\r\n\r\nfail"
        )
        await read_request(reader)
        writer.write(OK)
        await reader.read()

    async with Receiver(scene) as receiver:
        first = await client.post(receiver.key, post(), 5, 5)
        second = await client.post(receiver.key, post(), 5, 5)
    # The 103's headers (link, content-type) are not the final answer's.
    assert (first.status, first.body, first.headers) == (500, b"fail", {"content-length": "4"})
    assert (second.status, second.body) == (200, b"ok")
    assert receiver.connections == 1


async def test_101_is_refused_not_taken_as_an_answer(client: Http1Client) -> None:
    async def scene(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\n")
        await reader.read()

    async with Receiver(scene) as receiver:
        with pytest.raises(ConnectionError, match="101 Switching Protocols"):
            await client.post(receiver.key, post(), 5, 5)
    assert client._idle.get(receiver.key, []) == []


async def test_a_second_answer_in_the_same_write_breaks_the_connection(
    client: Http1Client,
) -> None:
    async def scene(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        if n == 0:  # one request, two answers: the stray 200 must never answer request 2
            writer.write(b"HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n" + OK)
        else:
            writer.write(b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n")
        await reader.read()

    async with Receiver(scene) as receiver:
        assert (await client.post(receiver.key, post(), 5, 5)).status == 500
        assert (await client.post(receiver.key, post(), 5, 5)).status == 503
    assert receiver.connections == 2


async def test_bytes_arriving_between_requests_break_the_connection(
    client: Http1Client,
) -> None:
    sent_stray = asyncio.Event()

    async def scene(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        if n == 0:
            writer.write(b"HTTP/1.1 500 Oops\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(OK)  # answers nothing: the connection is not to be trusted
            await writer.drain()
            sent_stray.set()
        else:
            writer.write(b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n")
        await reader.read()

    async with Receiver(scene) as receiver:
        assert (await client.post(receiver.key, post(), 5, 5)).status == 500
        await sent_stray.wait()
        await asyncio.sleep(0.05)
        assert (await client.post(receiver.key, post(), 5, 5)).status == 503
    assert receiver.connections == 2


async def endless(writer: asyncio.StreamWriter, start: bytes, piece: bytes) -> None:
    """Writes `start`, then `piece` over and over until the client leaves (or 10 s pass:
    longer than any client timeout here)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 10
    writer.write(start)
    while loop.time() < end:
        writer.write(piece)
        await writer.drain()


async def test_an_endless_header_is_refused_not_buffered(client: Http1Client) -> None:
    async def scene(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        await read_request(reader)
        await endless(writer, b"HTTP/1.1 200 OK\r\nx-endless: ", b"a" * 8192)

    async with Receiver(scene) as receiver:
        with pytest.raises(ConnectionError, match="response head over 65536 bytes"):
            await client.post(receiver.key, post(), 3, 3)


async def test_endless_interim_answers_are_refused(client: Http1Client) -> None:
    async def scene(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        await read_request(reader)
        await endless(writer, b"", b"HTTP/1.1 102 Processing\r\n\r\n" * 100)

    async with Receiver(scene) as receiver:
        with pytest.raises(ConnectionError, match="response head over 65536 bytes"):
            await client.post(receiver.key, post(), 3, 3)


async def test_an_endless_body_answers_with_its_start_and_drops_the_connection(
    client: Http1Client,
) -> None:
    async def scene(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await read_request(reader)
        if n == 0:
            chunk = b"2000\r\n" + b"b" * 0x2000 + b"\r\n"
            await endless(writer, b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", chunk)
        else:
            writer.write(OK)
            await reader.read()

    async with Receiver(scene) as receiver:
        got = await client.post(receiver.key, post(), 3, 3)
        assert (got.status, got.body) == (200, b"b" * 65536)
        assert client._idle.get(receiver.key, []) == []
        assert (await client.post(receiver.key, post(), 3, 3)).body == b"ok"
    assert receiver.connections == 2


async def test_a_body_of_exactly_the_limit_keeps_the_connection(client: Http1Client) -> None:
    async def scene(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        for _ in range(2):
            await read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 65536\r\n\r\n" + b"c" * 65536)
        await reader.read()

    async with Receiver(scene) as receiver:
        for _ in range(2):
            assert len((await client.post(receiver.key, post(), 3, 3)).body) == 65536
    assert receiver.connections == 1


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A loopback port whose accept queue is full: a SYN to it goes unanswered."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    queued = socket.create_connection(("127.0.0.1", port), timeout=1)  # fills the queue
    yield port
    queued.close()
    listener.close()


async def test_a_blackholed_address_leaves_time_for_the_next(blackhole: int) -> None:
    async def scene(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        await read_request(reader)
        writer.write(OK)
        await reader.read()

    async with Receiver(scene) as receiver:
        tried: list[str] = []

        async def resolve(host: str, port: int) -> list[tuple[int, Any]]:
            assert host == "hook.test"
            return [(socket.AF_INET, ("127.0.0.1", blackhole)), (socket.AF_INET, receiver.key[:2])]

        client = Http1Client(LOOPBACK, resolve, lambda a: tried.append(str(a)))
        try:
            got = await client.post(("hook.test", receiver.port, False), post(), 5, 2)
        finally:
            client.close()
    assert got.body == b"ok"
    assert tried == ["127.0.0.1", "127.0.0.1"]  # the blackhole, then the receiver
    assert receiver.connections == 1


async def test_every_address_blackholed_is_a_connect_timeout(blackhole: int) -> None:
    async def resolve(host: str, port: int) -> list[tuple[int, Any]]:
        return [(socket.AF_INET, ("127.0.0.1", blackhole))] * 2

    client = Http1Client(LOOPBACK, resolve)
    try:
        with pytest.raises(TimeoutError, match="connect timed out after 2s"):
            await client.post(("hook.test", 80, False), post(), 5, 2)
    finally:
        client.close()


async def test_idle_connections_of_a_finished_loop_are_closed(client: Http1Client) -> None:
    async def scene(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        while True:
            await read_request(reader)
            writer.write(OK)

    async with Receiver(scene) as receiver:
        # A first post on a loop of its own (in a thread), closed when it returns.
        await asyncio.to_thread(asyncio.run, client.post(receiver.key, post(), 5, 5))
        old = client._idle[receiver.key][0]
        assert old.sock is not None
        assert (await client.post(receiver.key, post(), 5, 5)).body == b"ok"
        assert old.sock.fileno() == -1
        for _ in range(100):  # the receiver sees the old connection end
            if receiver.closed:
                break
            await asyncio.sleep(0.02)
        assert (receiver.connections, receiver.closed) == (2, 1)
    # Its transport never saw its loop close it: asyncio warns when it is collected.
    del old
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


async def test_a_receivers_keep_alive_timeout_is_honoured(client: Http1Client) -> None:
    async def scene(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, _n: int) -> None:
        while True:
            await read_request(reader)
            writer.write(
                b"HTTP/1.1 200 OK\r\nkeep-alive: timeout=1, max=100\r\ncontent-length: 0\r\n\r\n"
            )

    async with Receiver(scene) as receiver:
        await client.post(receiver.key, post(), 5, 5)
        first = client._idle[receiver.key][0]
        assert first.keep_for == 1
        await client.post(receiver.key, post(), 5, 5)  # within the second: reused
        await asyncio.sleep(1.05)
        await client.post(receiver.key, post(), 5, 5)  # past it: a new connection
        assert first.transport is None
    assert receiver.connections == 2
