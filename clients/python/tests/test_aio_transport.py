"""The asyncio transport against loopback servers speaking each answer shape it must read."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from ingestd_client.aio_transport import MAX_HEAD, AsyncTransport
from ingestd_client.transport import Endpoint, TransportError, base_headers

JSON_202 = b'{"status":"accepted"}'


def answer(status: str, body: bytes, *extra: str) -> bytes:
    head = [f"HTTP/1.1 {status}", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class Server:
    """Reads each request whole; `reply(n)` gives the bytes for the n-th (0-based) request."""

    reply: Callable[[int], bytes | None]
    close_after: bool = False
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.requests.append(head + await reader.readexactly(length))
                data = self.reply(len(self.requests) - 1)
                if data is None:  # hang: the client's timeout must end it
                    await asyncio.sleep(30)
                    return
                writer.write(data)
                await writer.drain()
                if self.close_after or data.startswith(b"HTTP/1.0"):
                    return  # HTTP/1.0 without Content-Length: the close ends the body
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


async def serving(server: Server, scenario: Callable[[str], Awaitable[None]]) -> None:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        await scenario(f"http://127.0.0.1:{server.port}/base")


def transport(url: str, timeout: float = 5.0) -> AsyncTransport:
    return AsyncTransport(Endpoint(url), base_headers("sk_1"), timeout)


def run(server: Server, scenario: Callable[[str], Awaitable[None]]) -> None:
    asyncio.run(serving(server, scenario))


def test_keep_alive_reuses_one_connection_and_sends_a_whole_request() -> None:
    server = Server(lambda n: answer("202 Accepted", JSON_202, "Content-Type: application/json"))

    async def scenario(url: str) -> None:
        t = transport(url)
        for _ in range(3):
            reply = await t.post("/ingest", b'{"a":1}')
            assert reply.status == 202 and reply.json() == {"status": "accepted"}
            assert reply.headers["content-type"] == "application/json"
        await t.close()

    run(server, scenario)
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /base/ingest HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{server.port}\r\n".encode() in first
    assert b"Authorization: Bearer sk_1\r\n" in first
    assert b"Content-Length: 7\r\n" in first and first.endswith(b'\r\n\r\n{"a":1}')


def test_chunked_and_close_delimited_bodies() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'5;x=y\r\n{"a":\r\n2\r\n1}\r\n0\r\nT: 1\r\n\r\n'
    )
    until_close = b"HTTP/1.0 503 Service Unavailable\r\nRetry-After: 2\r\n\r\n" + JSON_202
    server = Server(lambda n: chunked if n == 0 else until_close)

    async def scenario(url: str) -> None:
        t = transport(url)
        first = await t.post("/x", b"{}")
        assert first.status == 200 and first.json() == {"a": 1}
        second = await t.post("/x", b"{}")
        assert second.status == 503 and second.headers["retry-after"] == "2"
        assert second.body == JSON_202
        await t.close()

    run(server, scenario)
    assert server.connections == 1  # chunked kept it alive; the close-delimited one ended it


def test_interim_answers_are_skipped() -> None:
    server = Server(lambda n: b"HTTP/1.1 100 Continue\r\n\r\n" + answer("202 Accepted", b"{}"))

    async def scenario(url: str) -> None:
        assert (await transport(url).post("/x", b"{}")).status == 202

    run(server, scenario)


def test_a_connection_the_server_closed_is_retried_once_on_a_fresh_one() -> None:
    server = Server(lambda n: answer("202 Accepted", b"{}"), close_after=True)

    async def scenario(url: str) -> None:
        t = transport(url)
        assert (await t.post("/x", b"{}")).status == 202
        await asyncio.sleep(0.05)  # the server has closed its side by now
        assert (await t.post("/x", b"{}")).status == 202
        await t.close()

    run(server, scenario)
    assert server.connections == 2 and len(server.requests) == 2


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "switched"),
        (b"SMTP ready\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: x1\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", "header"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD + b"\r\n\r\n", "head"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "IncompleteRead"),
    ],
)
def test_unreadable_answers_are_transport_errors(reply: bytes, message: str) -> None:
    server = Server(lambda n: reply, close_after=True)

    async def scenario(url: str) -> None:
        with pytest.raises(TransportError, match=message):
            await transport(url).post("/x", b"{}")

    run(server, scenario)


def test_no_answer_is_a_timeout() -> None:
    server = Server(lambda n: None)

    async def scenario(url: str) -> None:
        with pytest.raises(TransportError, match="no answer within"):
            await transport(url, timeout=0.2).post("/x", b"{}")

    run(server, scenario)


def test_refused_connection_is_a_transport_error() -> None:
    async def scenario() -> None:
        with pytest.raises(TransportError, match=r"Connect|refused|Errno"):
            await transport("http://127.0.0.1:1").post("/x", b"{}")

    asyncio.run(scenario())


def test_a_new_event_loop_does_not_reuse_the_old_loops_connections() -> None:
    server = Server(lambda n: answer("202 Accepted", b"{}"))
    t: list[AsyncTransport] = []

    async def first(url: str) -> None:
        t.append(transport(url))
        assert (await t[0].post("/x", b"{}")).status == 202

    async def both() -> None:
        listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        async with listener:
            inner = asyncio.new_event_loop()
            try:
                # The first loop runs in a thread of its own so both loops live at once.
                await asyncio.to_thread(inner.run_until_complete, first(f"http://127.0.0.1:{port}"))
            finally:
                inner.close()
            assert (await t[0].post("/x", b"{}")).status == 202
            await t[0].close()

    asyncio.run(both())
    assert server.connections == 2
