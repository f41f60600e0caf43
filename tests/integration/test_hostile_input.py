"""Hostile input gets a 4xx problem and changes nothing (issue 14 items 4, 6, 7), on a real
`ingestd serve`: out-of-range cursors and times, oversized batch items and admin bodies,
duplicate member names, content encodings, and the missing Content-Type decision."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from support import ServerProcess, running_server


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("hostile")) as proc:
        yield proc


@pytest.fixture
async def client(shared: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=shared.url, timeout=30) as http:
        yield http


def problem_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"] and body["title"] != "Error"
    return body


JSON = {"content-type": "application/json"}


# -- item 4: numbers out of range -------------------------------------------------------


@pytest.mark.parametrize("cursor", ["99999999999999999999999", "9223372036854775808", "١٢", "-1"])
async def test_dlq_cursor_out_of_range_is_400(client: httpx.AsyncClient, cursor: str) -> None:
    problem_of(await client.get("/dlq", params={"cursor": cursor}), 400)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b'{"since": 1e400}', 400),  # not a JSON number any float holds
        (b'{"since": 1' + b"0" * 400 + b"}", 422),  # an integer, but no time
        (b'{"since": -5}', 422),
        (b'{"until": 1e300}', 422),
        (b'{"since": "275760-09-13T00:00:00Z"}', 422),
    ],
)
async def test_replay_time_out_of_range_is_a_4xx(
    client: httpx.AsyncClient, raw: bytes, status: int
) -> None:
    problem_of(await client.post("/dlq/replay", content=raw, headers=JSON), status)


# -- item 6: sizes ----------------------------------------------------------------------


async def test_a_batch_item_over_max_event_bytes_is_refused_alone(
    client: httpx.AsyncClient,
) -> None:
    big = {"source": "hostile", "id": "big-1", "type": "t", "data": {"x": "a" * 70_000}}
    small = {"source": "hostile", "id": "small-1", "type": "t"}
    response = await client.post("/ingest/batch", json={"events": [small, big]})
    assert response.status_code == 207, response.text
    first, second = response.json()["results"]
    assert first["status"] == "accepted"
    assert second["status"] == "rejected" and second["error"]["status"] == 413
    assert second["error"]["field"] == "events[1]"
    # The same event alone is refused the same way.
    problem_of(await client.post("/ingest", json=big), 413)
    listed = (await client.get("/events", params={"source": "hostile"})).json()["events"]
    assert "big-1" not in {e["id"] for e in listed}


async def test_admin_bodies_have_a_size_limit(client: httpx.AsyncClient) -> None:
    huge = json.dumps({"ids": ["msg_x"] * 300_000}).encode()  # ~2.7 MB
    assert len(huge) > 2 * 1024 * 1024
    body = problem_of(await client.post("/dlq/replay", content=huge, headers=JSON), 413)
    assert "INGESTD_MAX_ADMIN_BODY_BYTES" in body["detail"]

    async def stream() -> AsyncIterator[bytes]:  # no Content-Length: refused while reading
        for start in range(0, len(huge), 65536):
            yield huge[start : start + 65536]

    problem_of(await client.post("/dlq/replay", content=stream(), headers=JSON), 413)


# -- item 7: strict JSON, encodings, content types --------------------------------------

DUPLICATES = [
    ("/ingest", b'{"source":"a","source":"b","type":"t"}'),
    ("/ingest", b'{"source":"dup","type":"t","data":{"k":1,"n":{"k":2,"k":3}}}'),
    ("/ingest", b'{"source":"dup","type":"t","data":{"c":"\\u003a","c":"x"}}'),
    ("/ingest/batch", b'{"events":[{"source":"dup","type":"t","type":"u"}]}'),
    ("/ingest/batch", b'[{"source":"dup","type":"t"},{"source":"dup","id":"1","id":"2"}]'),
    ("/destinations", b'{"name":"d1","name":"d2","kind":"inbox"}'),
    ("/dlq/replay", b'{"all":true,"all":false}'),
]


@pytest.mark.parametrize(("path", "raw"), DUPLICATES)
async def test_duplicate_member_names_are_400(
    client: httpx.AsyncClient, path: str, raw: bytes
) -> None:
    body = problem_of(await client.post(path, content=raw, headers=JSON), 400)
    assert "occurs twice" in body["detail"]
    assert (await client.get("/events", params={"source": "dup"})).json()["events"] == []
    assert (await client.get("/destinations/d2")).status_code == 404


async def test_colons_in_strings_are_not_duplicates(client: httpx.AsyncClient) -> None:
    event = {"source": "colons", "type": "a:b", "data": {"url": "http://x:1/", "t": "12:00"}}
    assert (await client.post("/ingest", json=event)).status_code == 202
    escaped = b'{"source":"colons","type":"t","data":{"c":"\\u003a\\u003A"}}'
    assert (await client.post("/ingest", content=escaped, headers=JSON)).status_code == 202


@pytest.mark.parametrize("path", ["/ingest", "/ingest/batch", "/destinations"])
@pytest.mark.parametrize("encoding", ["gzip", "br", "x-unknown"])
async def test_a_content_encoding_is_415(
    client: httpx.AsyncClient, path: str, encoding: str
) -> None:
    raw = gzip.compress(b'{"source":"enc","type":"t","name":"enc","kind":"inbox"}')
    headers = {**JSON, "content-encoding": encoding}
    body = problem_of(await client.post(path, content=raw, headers=headers), 415)
    assert "Content-Encoding" in body["detail"]


async def test_identity_encoding_is_the_plain_body(client: httpx.AsyncClient) -> None:
    headers = {**JSON, "content-encoding": "identity"}
    response = await client.post("/ingest", content=b'{"source":"enc","type":"t"}', headers=headers)
    assert response.status_code == 202, response.text


async def test_a_missing_content_type_is_taken_as_json(client: httpx.AsyncClient) -> None:
    """Decided (README): the body must still be strict JSON; a non-JSON type is a 415."""
    raw = b'{"source":"no-ct","id":"n1","type":"t"}'
    request = client.build_request("POST", "/ingest", content=raw)
    assert "content-type" not in request.headers  # httpx sends none for raw bytes
    response = await client.send(request)
    assert response.status_code == 202, response.text
    typed = await client.post("/ingest", content=raw, headers={"content-type": "text/plain"})
    problem_of(typed, 415)
