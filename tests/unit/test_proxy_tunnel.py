"""CONNECT against raw loopback "proxies" that answer in the ways a real one may not:
refusals, garbage, early bytes, a closed connection."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import pytest

from ingestd.destinations.proxy import parse_proxy
from ingestd.destinations.tunnel import ProxyRefused, connect_request, tunnel

PROXY = parse_proxy("http://u:p@127.0.0.1:1", "test")


async def ask(answer: Callable[[bytes], bytes | None]) -> tuple[list[bytes], Exception | None]:
    """Run tunnel() against a server that answers the CONNECT head with `answer(head)`
    (None: close without a word); returns what the server read and the error, if any."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head)
        reply = answer(head)
        if reply is not None:
            writer.write(reply)
            await writer.drain()
            await asyncio.sleep(0.05)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sock = socket.socket()
    sock.setblocking(False)
    error: Exception | None = None
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        await tunnel(sock, PROXY, "hooks.example.com", 443)
    except ProxyRefused as exc:
        error = exc
    finally:
        sock.close()
        server.close()
    return seen, error


async def test_a_2xx_opens_the_tunnel_and_the_request_carries_the_credentials() -> None:
    seen, error = await ask(lambda _h: b"HTTP/1.1 200 Connection established\r\n\r\n")
    assert error is None
    assert seen == [connect_request(PROXY, "hooks.example.com", 443)]
    assert seen[0].startswith(b"CONNECT hooks.example.com:443 HTTP/1.1\r\n")
    assert f"proxy-authorization: {PROXY.authorization}".encode() in seen[0]


@pytest.mark.parametrize(
    ("reply", "said"),
    [
        (b"HTTP/1.1 403 Forbidden\r\n\r\n", "403 Forbidden (the proxy's rules refuse"),
        (b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", "refused the credentials"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", "answered CONNECT with 'SSH-2.0-OpenSSH'"),
        (b"HTTP/1.1 200 OK\r\n\r\nearly", "sent bytes after its CONNECT answer"),
        (None, "closed the connection instead of answering"),
        (b"HTTP/1.1 200 OK\r\n" + b"x: " + b"y" * 20000 + b"\r\n\r\n", "over 16384 bytes"),
    ],
)
async def test_anything_but_a_clean_2xx_is_a_clear_refusal(reply: bytes | None, said: str) -> None:
    _seen, error = await ask(lambda _h: reply)
    assert error is not None and said in str(error), error
    assert "u:p" not in str(error) and "http://127.0.0.1:1" in str(error)


def test_an_ipv6_destination_is_bracketed() -> None:
    head = connect_request(parse_proxy("proxy:3128", "test"), "2001:db8::1", 8443)
    assert head == b"CONNECT [2001:db8::1]:8443 HTTP/1.1\r\nhost: [2001:db8::1]:8443\r\n\r\n"
