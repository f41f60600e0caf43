"""The Python SDK against a real `ingestd serve` (and, for 429/503 and 401, loopback fakes)."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from ingestd_client import AsyncClient, Client, EventRejected, RetryPolicy
from support import ServerProcess, free_port

UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
PATIENT = RetryPolicy(max_attempts=200, backoff_base=0.05, backoff_cap=0.5)


class Drops(list[tuple[dict[str, Any], str]]):
    def __call__(self, event: dict[str, Any], reason: str) -> None:
        self.append((event, reason))


async def stored(url: str, source: str) -> list[dict[str, Any]]:
    """Every stored event of `source`, following the cursor."""
    events: list[dict[str, Any]] = []
    cursor: str | None = None
    async with httpx.AsyncClient(base_url=url) as http:
        while True:
            params: dict[str, Any] = {"source": source, "limit": 1000}
            if cursor:
                params["cursor"] = cursor
            page = (await http.get("/events", params=params)).raise_for_status().json()
            events += page["events"]
            cursor = page["next_cursor"]
            if not cursor or not page["events"]:
                return events


def numbers(events: list[dict[str, Any]]) -> list[int]:
    return sorted(e["data"]["i"] for e in events)


# -- against the real server ---------------------------------------------------------------


async def test_batches_with_client_assigned_ids(server: ServerProcess) -> None:
    drops = Drops()
    client = Client(server.url, on_drop=drops, batch_size=50)
    for i in range(420):
        client.emit({"source": "batching", "type": "t", "data": {"i": i}})
    client.emit({"source": "batching", "id": "my-own-id", "data": {"i": 420}})
    assert await asyncio.to_thread(client.flush, 20)
    client.close()
    events = await stored(server.url, "batching")
    assert numbers(events) == list(range(421))
    ids = {e["data"]["i"]: e["id"] for e in events}
    assert ids.pop(420) == "my-own-id"
    assert all(UUID7.match(i) for i in ids.values())
    assert client.stats.sent == 421 and not drops
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get(f"/ingest/{ids[0]}/status")).status_code == 200


async def test_a_rejected_event_reaches_on_drop_and_is_not_retried(server: ServerProcess) -> None:
    drops = Drops()
    client = Client(server.url, on_drop=drops)
    client.emit({"source": "rejects", "data": {"i": 0}})
    client.emit({"source": "rejects", "occurred_at": "yesterday", "data": {"i": 1}})
    client.emit({"source": "rejects", "data": {"i": 2}})
    assert await asyncio.to_thread(client.flush, 10)
    client.close()
    assert numbers(await stored(server.url, "rejects")) == [0, 2]
    [(event, reason)] = drops
    assert event["data"] == {"i": 1}
    assert reason.startswith("rejected: 422") and "occurred_at" in reason
    assert client.stats.retried == 0 and client.stats.dropped == 1


async def test_close_sends_what_is_queued(server: ServerProcess) -> None:
    client = Client(server.url, linger=30)  # only close() makes these due
    for i in range(10):
        client.emit({"source": "closing", "data": {"i": i}})
    await asyncio.to_thread(client.close, 10)
    assert numbers(await stored(server.url, "closing")) == list(range(10))


async def test_kill_9_mid_stream_stores_every_event_exactly_once(server: ServerProcess) -> None:
    drops = Drops()
    client = Client(server.url, on_drop=drops, retry=PATIENT, batch_size=20, linger=0.01)
    total = 1500
    done = threading.Event()

    def produce() -> None:
        for i in range(total):
            client.emit({"source": "kill9", "type": "t", "data": {"i": i}})
            if i % 10 == 9:
                time.sleep(0.01)  # ~1,000 events/s for 1.5 s
        done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    await asyncio.sleep(0.4)
    server.kill()  # kill -9, batches in flight
    await asyncio.sleep(0.5)
    await server.start()  # same port, same database
    await asyncio.to_thread(done.wait, 30)
    producer.join()
    assert await asyncio.to_thread(client.flush, 60)
    client.close()
    got = numbers(await stored(server.url, "kill9"))
    assert got == list(range(total)), f"missing {sorted(set(range(total)) - set(got))[:10]}"
    assert not drops
    assert client.stats.retried > 0  # the outage was felt


async def test_the_spool_survives_a_client_restart(server: ServerProcess, tmp_path: Path) -> None:
    spool = tmp_path / "client-spool.db"
    down = f"http://127.0.0.1:{free_port()}"
    first = Client(down, spool=spool, retry=RetryPolicy(max_attempts=2, backoff_base=0.01))
    for i in range(30):
        first.emit({"source": "spooled", "data": {"i": i}})
    first.close(timeout=2)
    assert first.stats.spooled == 30 and first.stats.dropped == 0

    second = Client(server.url, spool=spool)  # a new process would do the same
    assert await asyncio.to_thread(second.flush, 20)
    second.close()
    assert numbers(await stored(server.url, "spooled")) == list(range(30))
    assert second.stats.sent == 30


async def test_send_returns_the_server_result(server: ServerProcess) -> None:
    with Client(server.url) as client:
        first = await asyncio.to_thread(client.send, {"source": "send", "id": "x1", "data": {}})
        again = await asyncio.to_thread(client.send, {"source": "send", "id": "x1", "data": {}})
        with pytest.raises(EventRejected) as refused:
            await asyncio.to_thread(client.send, {"data": {}})
    assert first.status == "accepted" and first.id == "x1" and first.status_url
    assert again.duplicate and again.id == "x1"
    assert refused.value.status == 422 and refused.value.problem["status"] == 422


async def test_exit_flushes_an_unclosed_client(server: ServerProcess) -> None:
    script = textwrap.dedent(
        f"""
        from ingestd_client import Client
        client = Client({server.url!r}, linger=60)
        for i in range(25):
            client.emit({{"source": "atexit", "data": {{"i": i}}}})
        """
    )
    await asyncio.to_thread(subprocess.run, [sys.executable, "-c", script], check=True, timeout=30)
    assert numbers(await stored(server.url, "atexit")) == list(range(25))


async def test_async_client(server: ServerProcess) -> None:
    drops = Drops()
    async with AsyncClient(server.url, on_drop=drops, batch_size=64) as client:
        for i in range(300):
            client.emit({"source": "aio", "data": {"i": i}})
        assert await client.flush(20)
        result = await client.send({"source": "aio", "id": "one", "data": {"i": 300}})
        assert result.status == "accepted" and result.id == "one"
        for i in range(301, 310):
            client.emit({"source": "aio", "data": {"i": i}})
    assert numbers(await stored(server.url, "aio")) == list(range(310))
    assert client.stats.sent == 309 and not drops


async def test_async_client_rides_out_a_restart(server: ServerProcess) -> None:
    client = AsyncClient(server.url, retry=PATIENT, batch_size=10, linger=0.01)
    for i in range(100):
        client.emit({"source": "aio-kill", "data": {"i": i}})
        if i == 40:
            server.kill()
        if i == 70:
            await server.start()
        await asyncio.sleep(0.002)
    assert await client.flush(30)
    await client.aclose()
    assert numbers(await stored(server.url, "aio-kill")) == list(range(100))


# -- against a loopback fake that answers 429/503 with Retry-After -------------------------


@dataclass
class Overloaded:
    """Answers the first request with `status` and Retry-After, then accepts everything."""

    status: int
    retry_after: int
    seen: list[tuple[float, bytes]] = field(default_factory=list)

    def answer(self, body: bytes) -> tuple[int, dict[str, str], bytes]:
        self.seen.append((time.monotonic(), body))
        if len(self.seen) == 1:
            problem = {"type": "about:blank", "title": "busy", "status": self.status}
            headers = {
                "Content-Type": "application/problem+json",
                "Retry-After": str(self.retry_after),
            }
            return self.status, headers, json.dumps(problem).encode()
        events = json.loads(body)["events"]
        results = [{"status": "accepted", "id": e["id"]} for e in events]
        return 207, {"Content-Type": "application/json"}, json.dumps({"results": results}).encode()


@pytest.fixture
def overloaded(request: pytest.FixtureRequest) -> Iterator[tuple[str, Overloaded]]:
    fake = Overloaded(status=request.param, retry_after=2)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status, headers, data = fake.answer(body)
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(data))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", fake
    finally:
        httpd.shutdown()
        httpd.server_close()


def check_waited(fake: Overloaded, n: int) -> None:
    (first, body1), (second, body2) = fake.seen
    assert second - first >= fake.retry_after  # not the (tiny) backoff: the server's word
    assert body1 == body2  # the same ids, so the retry is idempotent
    ids = [e["id"] for e in json.loads(body1)["events"]]
    assert len(ids) == n and all(UUID7.match(i) for i in ids)


@pytest.mark.parametrize("overloaded", [429, 503], indirect=True)
async def test_retry_after_is_honoured(overloaded: tuple[str, Overloaded]) -> None:
    url, fake = overloaded
    quick = RetryPolicy(backoff_base=0.001, backoff_cap=0.001)
    client = Client(url, retry=quick)
    for i in range(3):
        client.emit({"source": "busy", "data": {"i": i}})
    assert await asyncio.to_thread(client.flush, 10)
    client.close()
    check_waited(fake, 3)
    assert client.stats.retried == 3 and client.stats.sent == 3


@pytest.mark.parametrize("overloaded", [429], indirect=True)
async def test_retry_after_is_honoured_by_the_async_client(
    overloaded: tuple[str, Overloaded],
) -> None:
    url, fake = overloaded
    async with AsyncClient(url, retry=RetryPolicy(backoff_base=0.001)) as client:
        client.emit({"source": "busy", "data": {"i": 0}})
        assert await client.flush(10)
    check_waited(fake, 1)


# -- against a loopback server that refuses the API key with 401 ---------------------------

DENIED = {
    "type": "https://ingestd.dev/problems/unauthorized",
    "title": "Unauthorized",
    "status": 401,
    "detail": "the API key is not valid",
}


@pytest.fixture
async def unauthorized() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A real aiohttp server on loopback answering every POST 401 problem+json."""
    seen: list[dict[str, str]] = []

    async def deny(request: web.Request) -> web.Response:
        await request.read()
        seen.append(dict(request.headers))
        return web.Response(
            status=401,
            body=json.dumps(DENIED).encode(),
            content_type="application/problem+json",
            headers={"WWW-Authenticate": "Bearer"},
        )

    app = web.Application()
    app.router.add_post("/{tail:.*}", deny)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def check_denied(drops: Drops, seen: list[dict[str, str]], n: int) -> None:
    assert len(seen) == 1  # a 401 is permanent: no retry
    assert seen[0]["Authorization"] == "Bearer sk_test_123"
    assert len(drops) == n
    assert all(r.startswith("rejected: 401") and "API key is not valid" in r for _, r in drops)


async def test_a_401_is_permanent_and_reaches_on_drop(
    unauthorized: tuple[str, list[dict[str, str]]],
) -> None:
    url, seen = unauthorized
    drops = Drops()
    client = Client(url, api_key="sk_test_123", on_drop=drops, retry=RetryPolicy(backoff_base=0))
    for i in range(3):
        client.emit({"source": "auth", "data": {"i": i}})
    assert await asyncio.to_thread(client.flush, 10)
    client.close()
    check_denied(drops, seen, 3)
    assert [e["data"]["i"] for e, _ in drops] == [0, 1, 2]
    assert client.stats.dropped == 3 and client.stats.retried == 0 and client.stats.sent == 0

    sync_client = Client(url, api_key="sk_test_123")
    with sync_client, pytest.raises(EventRejected) as refused:
        await asyncio.to_thread(sync_client.send, {"source": "auth", "data": {}})
    assert refused.value.status == 401
    assert refused.value.problem["detail"] == "the API key is not valid"


async def test_a_401_reaches_on_drop_from_the_async_client(
    unauthorized: tuple[str, list[dict[str, str]]],
) -> None:
    url, seen = unauthorized
    drops = Drops()
    async with AsyncClient(url, api_key="sk_test_123", on_drop=drops) as client:
        client.emit({"source": "auth", "data": {"i": 0}})
        client.emit({"source": "auth", "data": {"i": 1}})
        assert await client.flush(10)
    check_denied(drops, seen, 2)


async def test_no_api_key_sends_no_authorization_header(
    unauthorized: tuple[str, list[dict[str, str]]],
) -> None:
    url, seen = unauthorized
    with Client(url, on_drop=Drops()) as client:
        client.emit({"source": "auth", "data": {}})
        assert await asyncio.to_thread(client.flush, 10)
    assert len(seen) == 1 and "Authorization" not in seen[0]


async def test_the_sdk_and_a_real_server_with_api_keys_agree(tmp_path: Path) -> None:
    key = "sk_real_0123456789ab"  # the server wants at least 16 characters
    proc = ServerProcess(tmp_path, port=free_port(), env={"INGESTD_API_KEYS": key})
    await proc.start()
    try:
        drops = Drops()
        with Client(proc.url, api_key=key, on_drop=drops) as good:
            for i in range(5):
                good.emit({"source": "keyed", "data": {"i": i}})
            assert await asyncio.to_thread(good.flush, 10)
        wrong = Drops()
        with Client(proc.url, api_key="sk_wrong_0123456789ab", on_drop=wrong) as bad:
            bad.emit({"source": "keyed", "data": {"i": 99}})
            assert await asyncio.to_thread(bad.flush, 10)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=proc.url, headers=headers) as http:
            page = (await http.get("/events", params={"source": "keyed"})).raise_for_status()
    finally:
        await proc.stop()
    assert sorted(e["data"]["i"] for e in page.json()["events"]) == list(range(5))
    assert not drops
    [(event, reason)] = wrong
    assert event["data"] == {"i": 99} and reason.startswith("rejected: 401")
