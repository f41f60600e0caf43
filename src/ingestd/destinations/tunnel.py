"""CONNECT through a forward proxy on a connected socket, before TLS starts on it.

The exchange happens on the raw socket so that the HTTP/1.1 connection made on it
afterwards is the same as a direct one: TLS to the destination (its name verified, not
the proxy's) runs inside the tunnel, and the connection is pooled like any other.
"""

from __future__ import annotations

import asyncio
import socket

from ingestd.destinations.proxy import Proxy

ANSWER_LIMIT = 16384
"""Bytes of the proxy's answer to CONNECT read before it is refused as not HTTP."""

_CREDENTIALS = " (the proxy refused the credentials: http://user:password@host:port)"
_HINTS = {
    401: _CREDENTIALS,  # tinyproxy's answer to CONNECT with wrong ones
    407: _CREDENTIALS,
    403: " (the proxy's rules refuse this destination)",
}


class ProxyRefused(ConnectionError):
    """The proxy cannot be reached or did not open a tunnel to the destination."""


def connect_request(proxy: Proxy, host: str, port: int) -> bytes:
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {authority} HTTP/1.1", f"host: {authority}"]
    if proxy.authorization is not None:
        lines.append(f"proxy-authorization: {proxy.authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def tunnel(sock: socket.socket, proxy: Proxy, host: str, port: int) -> None:
    """Ask the proxy on `sock` for a tunnel to host:port; raise ProxyRefused unless it
    answers 2xx. Nothing may follow the answer: the destination speaks after our TLS
    ClientHello, so early bytes are not from it."""
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, connect_request(proxy, host, port))
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = await loop.sock_recv(sock, ANSWER_LIMIT)
        if not chunk:
            raise ProxyRefused(f"proxy {proxy} closed the connection instead of answering CONNECT")
        answer += chunk
        if len(answer) > ANSWER_LIMIT:
            raise ProxyRefused(f"proxy {proxy} answered CONNECT with over {ANSWER_LIMIT} bytes")
    head, _, rest = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    version, _, status = status_line.partition(" ")
    code, _, reason = status.partition(" ")
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ProxyRefused(f"proxy {proxy} answered CONNECT with {status_line[:100]!r}")
    if not 200 <= int(code) < 300:
        hint = _HINTS.get(int(code), "")
        raise ProxyRefused(
            f"proxy {proxy} answered CONNECT {host}:{port} with {code} {reason[:100]}{hint}"
        )
    if rest:
        raise ProxyRefused(f"proxy {proxy} sent bytes after its CONNECT answer")
