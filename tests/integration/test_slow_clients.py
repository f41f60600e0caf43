"""Slow, silent, oversized and malformed clients (issue 14 items 8-10), against a real
`ingestd serve` with short deadlines: each kind is cut while a well-behaved client keeps
being served, a head too large is a 431 (a URL 414), and framing errors are problem+json
400s instead of uvicorn's text/plain."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import ServerProcess, all_events, free_port, running_server

DEADLINE = 2.0
ENV = {
    "INGESTD_HTTP_FIRST_BYTE_TIMEOUT": str(DEADLINE),
    "INGESTD_HTTP_HEAD_TIMEOUT": str(DEADLINE),
    "INGESTD_HTTP_BODY_TIMEOUT": str(DEADLINE),
    "INGESTD_HTTP_MAX_CONNECTIONS": "400",
}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("slow"), ENV) as proc:
        yield proc


async def open_conn(server: ServerProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def until_closed(reader: asyncio.StreamReader, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes; and how long that took."""
    started = time.monotonic()
    data = b""
    with contextlib.suppress(ConnectionError):
        async with asyncio.timeout(limit):
            while chunk := await reader.read(65536):
                data += chunk
    return data, time.monotonic() - started


async def trickle(writer: asyncio.StreamWriter, data: bytes, every: float) -> None:
    """One byte at a time, `every` seconds apart, until the server closes."""
    with contextlib.suppress(ConnectionError, OSError):
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every)


async def served_meanwhile(server: ServerProcess, seconds: float) -> list[float]:
    """A well-behaved client sending events for `seconds`: each request's latency."""
    latencies = []
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            response = await http.post("/ingest", json={"source": "good", "type": "t"})
            assert response.status_code == 202, response.text
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.05)
    return latencies


async def test_slowloris_heads_get_408_while_others_are_served(shared: ServerProcess) -> None:
    head = b"POST /ingest HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    conns = [await open_conn(shared) for _ in range(100)]
    tricklers = [asyncio.create_task(trickle(w, head, 0.25)) for _, w in conns]
    closing = [asyncio.create_task(until_closed(r, 5 * DEADLINE)) for r, _ in conns]
    latencies = await served_meanwhile(shared, DEADLINE + 1)
    results = await asyncio.gather(*closing)
    for task in tricklers:
        task.cancel()
    for _, writer in conns:
        writer.close()
    assert all(data.startswith(b"HTTP/1.1 408") for data, _ in results), results[0]
    assert all(b"application/problem+json" in data for data, _ in results)
    assert max(took for _, took in results) < 4 * DEADLINE  # cut, not left open
    assert len(latencies) >= 5 and max(latencies) < DEADLINE


async def test_slow_bodies_get_408_and_store_nothing(shared: ServerProcess) -> None:
    conns = []
    for n in range(30):
        reader, writer = await open_conn(shared)
        body = json.dumps({"source": "slow-body", "id": f"sb-{n}", "type": "t"}).encode()
        writer.write(
            b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (len(body) + 100)
        )
        conns.append((reader, writer, body))
    tricklers = [asyncio.create_task(trickle(w, b, 0.1)) for _, w, b in conns]
    closing = [asyncio.create_task(until_closed(r, 5 * DEADLINE)) for r, _, _ in conns]
    latencies = await served_meanwhile(shared, DEADLINE + 1)
    results = await asyncio.gather(*closing)
    for task in tricklers:
        task.cancel()
    assert all(data.startswith(b"HTTP/1.1 408") for data, _ in results), results[0]
    assert all(b"nothing was stored" in data for data, _ in results)
    assert len(latencies) >= 5 and max(latencies) < DEADLINE
    async with httpx.AsyncClient(base_url=shared.url) as http:
        assert await all_events(http, source="slow-body") == []


async def test_silent_connections_are_closed_while_others_are_served(
    shared: ServerProcess,
) -> None:
    conns = [await open_conn(shared) for _ in range(300)]
    closing = [asyncio.create_task(until_closed(r, 5 * DEADLINE)) for r, _ in conns]
    latencies = await served_meanwhile(shared, DEADLINE + 1)
    results = await asyncio.gather(*closing)
    assert all(data == b"" for data, _ in results)  # closed without a word
    assert max(took for _, took in results) < 4 * DEADLINE
    assert len(latencies) >= 5 and max(latencies) < DEADLINE


async def test_over_the_connection_cap_a_new_connection_gets_503(tmp_path: Path) -> None:
    env = {**ENV, "INGESTD_HTTP_MAX_CONNECTIONS": "20", "INGESTD_HTTP_FIRST_BYTE_TIMEOUT": "60"}
    server = ServerProcess(tmp_path, port=free_port(), env=env)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
            assert (await http.get("/health")).status_code == 200  # holds one connection
            idle = [await open_conn(server) for _ in range(19)]
            await asyncio.sleep(0.2)
            reader, _ = await open_conn(server)
            refused, _ = await until_closed(reader, 5)
            assert refused.startswith(b"HTTP/1.1 503"), refused
            assert b"retry-after: 1" in refused and b"INGESTD_HTTP_MAX_CONNECTIONS" in refused
            # The connection already open is served meanwhile...
            response = await http.post("/ingest", json={"source": "cap", "type": "t"})
            assert response.status_code == 202
            # ...and once connections close, new ones are accepted again.
            for _, writer in idle:
                writer.close()
            await asyncio.sleep(0.5)
            async with httpx.AsyncClient(base_url=server.url, timeout=5) as fresh:
                assert (await fresh.get("/health")).status_code == 200
    finally:
        await server.stop()


async def send_raw(server: ServerProcess, data: bytes) -> bytes:
    reader, writer = await open_conn(server)
    writer.write(data)
    await writer.drain()
    answer, _ = await until_closed(reader, 10)
    writer.close()
    return answer


async def test_a_head_over_the_limit_is_431_and_a_long_url_414(shared: ServerProcess) -> None:
    big = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8_000_000 + b"\r\n\r\n"
    answer = await send_raw(shared, big)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert b"application/problem+json" in answer
    many = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-A: bbbbbbbbbbbbbbbb\r\n" * 5000 + b"\r\n"
    assert (await send_raw(shared, many)).startswith(b"HTTP/1.1 431")
    url = b"GET /events?source=" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert (await send_raw(shared, url)).startswith(b"HTTP/1.1 414")
    ok = (
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: "
        + b"a" * 30_000
        + b"\r\nConnection: close\r\n\r\n"
    )
    assert (await send_raw(shared, ok)).startswith(b"HTTP/1.1 200")


FRAMING = [
    b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    b"POST /ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked"
    b"\r\n\r\n0\r\n\r\n",
    b"POST /ingest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"FROB /ingest HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /hea\x00lth HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /hea\rlth HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
]


@pytest.mark.parametrize("request_bytes", FRAMING, ids=range(len(FRAMING)))
async def test_framing_errors_are_problem_json(shared: ServerProcess, request_bytes: bytes) -> None:
    answer = await send_raw(shared, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer
    assert b"content-type: application/problem+json" in head
    problem = json.loads(body)
    assert problem["status"] == 400 and "not valid HTTP/1.1" in problem["detail"]
