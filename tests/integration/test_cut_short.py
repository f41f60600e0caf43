"""A body cut short stores nothing (issue 14 item 1): a complete-looking JSON prefix of a
longer Content-Length, or chunks without the last one, then the client goes away. Raw
sockets against a real `ingestd serve`, because no HTTP client sends such a request."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from support import ServerProcess, all_events, running_server


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("cut-short")) as proc:
        yield proc


def send_and_vanish(server: ServerProcess, head: bytes, body: bytes) -> bytes:
    """Send a request head and part of its body, wait until the server has read it, close.
    Returns whatever the server answered before the close (it must be nothing)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head + body)
        sock.settimeout(0.3)  # long enough for the server to read and parse what it got
        try:
            answer = sock.recv(65536)
        except TimeoutError:
            answer = b""
    return answer


def head(path: str, extra: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{extra}\r\n"
    ).encode()


def event(eid: str) -> dict[str, str]:
    return {"id": eid, "source": "cut", "type": "t"}


def cases(tag: str) -> list[tuple[str, bytes, bytes, list[str]]]:
    single = json.dumps(event(f"{tag}-single")).encode()
    batch_ids = [f"{tag}-batch-{n}" for n in range(3)]
    batch = json.dumps({"events": [event(i) for i in batch_ids]}).encode()
    chunked = json.dumps(event(f"{tag}-chunked")).encode()
    chunked_batch_ids = [f"{tag}-chunked-batch-{n}" for n in range(3)]
    chunked_batch = json.dumps([event(i) for i in chunked_batch_ids]).encode()
    return [
        ("length", head("/ingest", "Content-Length: 1000\r\n"), single, [f"{tag}-single"]),
        ("batch", head("/ingest/batch", "Content-Length: 5000\r\n"), batch, batch_ids),
        # One whole chunk holding a whole event, never the terminating 0-chunk.
        (
            "chunked",
            head("/ingest", "Transfer-Encoding: chunked\r\n"),
            b"%x\r\n%s\r\n" % (len(chunked), chunked),
            [f"{tag}-chunked"],
        ),
        (
            "chunked-batch",
            head("/ingest/batch", "Transfer-Encoding: chunked\r\n"),
            b"%x\r\n%s\r\n" % (len(chunked_batch), chunked_batch),
            chunked_batch_ids,
        ),
    ]


async def test_a_body_cut_short_stores_nothing(shared: ServerProcess) -> None:
    cut_ids: list[str] = []
    for name, request_head, partial, ids in cases("cs"):
        answer = await asyncio.to_thread(send_and_vanish, shared, request_head, partial)
        assert answer == b"", f"{name}: answered {answer!r} to a request it never got whole"
        cut_ids += ids
    async with httpx.AsyncClient(base_url=shared.url) as http:
        # The server works: a whole request after the cut ones is stored...
        whole = await http.post("/ingest", json=event("cs-whole"))
        assert whole.status_code == 202, whole.text
        # ...and for a while after, none of the cut ones ever shows up.
        deadline = time.monotonic() + 1.0
        while True:
            stored = {e["id"] for e in await all_events(http, source="cut")}
            assert "cs-whole" in stored
            assert not stored & set(cut_ids), f"stored without a 202: {stored & set(cut_ids)}"
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
    assert "Traceback" not in shared.logs()


async def test_an_admin_body_cut_short_does_nothing(shared: ServerProcess) -> None:
    body = json.dumps({"name": "cut-dest", "kind": "inbox"}).encode()
    request_head = head("/destinations", "Content-Length: 1000\r\n")
    answer = await asyncio.to_thread(send_and_vanish, shared, request_head, body)
    assert answer == b""
    async with httpx.AsyncClient(base_url=shared.url) as http:
        assert (await http.get("/destinations/cut-dest")).status_code == 404
    assert "Traceback" not in shared.logs()


async def test_the_whole_body_of_the_same_shape_is_stored(shared: ServerProcess) -> None:
    """The control: the same raw requests, completed, are accepted (so the test above
    fails for the right reason)."""
    body = json.dumps(event("cs-control")).encode()
    request = head("/ingest", f"Content-Length: {len(body)}\r\nConnection: close\r\n") + body
    with socket.create_connection(("127.0.0.1", shared.port), timeout=5) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 202"), answer
    chunked = head("/ingest/batch", "Transfer-Encoding: chunked\r\nConnection: close\r\n")
    batch = json.dumps([event("cs-control-b")]).encode()
    with socket.create_connection(("127.0.0.1", shared.port), timeout=5) as sock:
        sock.sendall(chunked + b"%x\r\n%s\r\n0\r\n\r\n" % (len(batch), batch))
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 207"), answer
