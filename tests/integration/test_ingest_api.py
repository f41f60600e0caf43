"""The HTTP API of a real `ingestd serve`: acceptance, the bad-input table, reads, docs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from support import ServerProcess, all_events, running_server

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for this module's read-only and bad-input tests (starting one costs ~1 s)."""
    with running_server(tmp_path_factory.mktemp("api")) as proc:
        yield proc


@pytest.fixture
async def client(shared: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=shared.url, timeout=30) as c:
        yield c


def post_raw(
    c: httpx.AsyncClient, path: str, body: Any, content_type: str | None = "application/json"
) -> Any:
    headers = {"content-type": content_type} if content_type else {}
    return c.post(path, content=body, headers=headers)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("https://")
    assert body["title"]
    assert body["detail"]
    return body


# -- acceptance ------------------------------------------------------------------------


async def test_accepted_event_is_stored_and_visible(client: httpx.AsyncClient) -> None:
    event = {
        "id": "api-accepted-1",
        "source": "api-accept",
        "type": "order.created",
        "occurred_at": "2026-01-31T12:00:00+01:00",
        "actor_id": "u-1",
        "data": {"total": 12.5, "items": [1, 2], "note": "h\u00e9llo \U0001f600"},
    }
    r = await client.post("/ingest", json=event)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body == {
        "status": "accepted",
        "id": "api-accepted-1",
        "event_id": "api-accepted-1",
        "idempotency_key": "api-accept:api-accepted-1",
        "status_url": "/ingest/api-accepted-1/status",
    }
    [stored] = await all_events(client, source="api-accept")
    assert stored["id"] == "api-accepted-1"
    assert stored["type"] == "order.created"
    assert stored["occurred_at"] == "2026-01-31T11:00:00.000000Z"
    assert stored["actor_id"] == "u-1"
    assert stored["data"] == event["data"]
    assert stored["received_at"]
    status = await client.get(body["status_url"])
    assert status.status_code == 200
    # No destination subscribes: nothing to do, so it is complete.
    assert status.json()["status"] == "completed"
    assert status.json()["destinations"] == []


async def test_event_without_id_gets_a_server_id(client: httpx.AsyncClient) -> None:
    r = await client.post("/ingest", json={"source": "api-noid"})
    assert r.status_code == 202
    body = r.json()
    assert body["idempotency_key"] is None
    [stored] = await all_events(client, source="api-noid")
    assert stored["id"] == body["id"]
    assert stored["type"] is None


async def test_api_events_alias_and_aliased_fields(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/events",
        json={
            "source": "api-alias",
            "event_type": "user.signup",
            "event_id": "alias-1",
            "timestamp": "2026-02-01T00:00:00Z",
        },
    )
    assert r.status_code == 202, r.text
    [stored] = await all_events(client, source="api-alias")
    assert (stored["id"], stored["type"], stored["occurred_at"]) == (
        "alias-1",
        "user.signup",
        "2026-02-01T00:00:00.000000Z",
    )


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "application/json; charset=utf-8", "application/vnd.x+json"],
)
async def test_json_content_types_are_accepted(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    r = await post_raw(client, "/ingest", b'{"source": "api-ct"}', content_type)
    assert r.status_code == 202, r.text


async def test_batch_results_are_per_item_in_order(client: httpx.AsyncClient) -> None:
    events = [
        {"source": "api-batch", "id": "b-1", "type": "t"},
        {"source": "api-batch", "data": []},
        {"source": "api-batch", "id": "b-2", "type": "t"},
        {"type": "no source"},
        {"source": "api-batch", "id": "b-1", "type": "t"},
        "not an object",
    ]
    r = await client.post("/ingest/batch", json={"events": events})
    assert r.status_code == 207, r.text
    body = r.json()
    results = body["results"]
    assert [x["status"] for x in results] == [
        "accepted",
        "rejected",
        "accepted",
        "rejected",
        "duplicate",
        "rejected",
    ]
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (2, 1, 3)
    assert results[0]["id"] == "b-1"
    assert results[4]["id"] == "b-1"
    assert results[1]["error"]["field"] == "events[1].data"
    assert results[1]["error"]["status"] == 422
    assert results[3]["error"]["field"] == "events[3].source"
    assert results[5]["error"]["field"] == "events[5].$"
    assert sorted(e["id"] for e in await all_events(client, source="api-batch")) == ["b-1", "b-2"]


def outcome_counts(exposition: str) -> dict[str, float]:
    prefix = 'ingestd_ingest_events_total{outcome="'
    return {
        line[len(prefix) :].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in exposition.splitlines()
        if line.startswith(prefix)
    }


async def test_a_batch_counts_each_event_under_its_outcome(client: httpx.AsyncClient) -> None:
    """The batch path counts outcomes once per request: the totals still say every event."""
    seed = {"source": "api-count", "id": "c-0", "type": "t", "data": {"n": 0}}
    assert (await client.post("/ingest", json=seed)).status_code == 202
    before = outcome_counts((await client.get("/metrics")).text)
    events = [
        *({"source": "api-count", "id": f"c-{n}", "type": "t"} for n in range(1, 4)),
        seed,  # duplicate
        {**seed, "data": {"n": 1}},  # mismatch
        {"type": "no source"},  # rejected
        {"source": "api-count", "id": "c-big", "data": {"x": "a" * 70_000}},  # rejected: 413
    ]
    r = await client.post("/ingest/batch", json={"events": events})
    assert r.status_code == 207, r.text
    after = outcome_counts((await client.get("/metrics")).text)
    change = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert change == {"accepted": 3, "duplicate": 1, "mismatch": 1, "rejected": 2}


async def test_batch_as_a_bare_array(client: httpx.AsyncClient) -> None:
    r = await client.post("/ingest/batch", json=[{"source": "api-bare"}, {"source": "api-bare"}])
    assert r.status_code == 207
    assert r.json()["accepted"] == 2
    assert len(await all_events(client, source="api-bare")) == 2


async def test_batch_of_exactly_max_batch_is_accepted(client: httpx.AsyncClient) -> None:
    events = [{"source": "api-max", "id": f"m{i}"} for i in range(1000)]
    r = await client.post("/ingest/batch", json={"events": events})
    assert r.status_code == 207
    assert r.json()["accepted"] == 1000
    assert len(await all_events(client, source="api-max")) == 1000


# -- the bad-input table: problem+json, nothing stored, never a 500 ----------------------


async def count_all(client: httpx.AsyncClient) -> int:
    return len(await all_events(client))


def deep(levels: int) -> str:
    return '{"a":' * levels + "1" + "}" * levels


BAD_SINGLE = [
    # (id, body, status, field)
    ("malformed", b'{"source": "bad",', 400, None),
    ("empty", b"", 400, None),
    ("trailing-comma", b'{"source": "bad",}', 400, None),
    ("invalid-utf8", b'{"source": "bad\xff\xfe"}', 400, None),
    ("overlong-utf8", b'{"source": "bad\xc0\xaf"}', 400, None),
    ("nan", b'{"source": "bad", "data": {"x": NaN}}', 400, None),
    ("infinity", b'{"source": "bad", "data": {"x": Infinity}}', 400, None),
    ("neg-infinity", b'{"source": "bad", "data": {"x": -Infinity}}', 400, None),
    ("huge-float", b'{"source": "bad", "data": {"x": 1e400}}', 400, None),
    ("lone-high-surrogate", rb'{"source": "bad", "data": {"x": "\ud800"}}', 400, None),
    ("lone-low-surrogate", rb'{"source": "bad", "data": {"x": "a\udfffb"}}', 400, None),
    ("surrogate-in-key", rb'{"source": "bad", "data": {"\udc00": 1}}', 400, None),
    ("surrogate-source", rb'{"source": "\ud834"}', 400, None),
    ("missing-source", b'{"type": "t"}', 422, "source"),
    ("empty-source", b'{"source": ""}', 422, "source"),
    ("number-source", b'{"source": 12}', 422, "source"),
    ("long-type", json.dumps({"source": "bad", "type": "t" * 300}).encode(), 422, "type"),
    ("bad-id", b'{"source": "bad", "id": 5}', 422, "id"),
    ("data-array", b'{"source": "bad", "data": [1, 2]}', 422, "data"),
    ("data-string", b'{"source": "bad", "data": "x"}', 422, "data"),
    ("data-number", b'{"source": "bad", "data": 0}', 422, "data"),
    ("event-array", b'[{"source": "bad"}]', 422, "$"),
    ("event-string", b'"event"', 422, "$"),
    ("occurred-at-words", b'{"source": "bad", "occurred_at": "yesterday"}', 422, "occurred_at"),
    ("occurred-at-epoch", b'{"source": "bad", "occurred_at": 1769860800}', 422, "occurred_at"),
    (
        "occurred-at-no-zone",
        b'{"source": "bad", "occurred_at": "2026-01-31T12:00:00"}',
        422,
        "occurred_at",
    ),
    (
        "occurred-at-feb-30",
        b'{"source": "bad", "occurred_at": "2026-02-30T12:00:00Z"}',
        422,
        "occurred_at",
    ),
    (
        "type-alias-disagrees",
        b'{"source": "bad", "type": "a", "event_type": "b"}',
        422,
        "event_type",
    ),
    ("int-2^63", b'{"source": "bad", "data": {"n": 9223372036854775808}}', 422, "data.n"),
    ("int-2^64", b'{"source": "bad", "data": {"n": 18446744073709551616}}', 422, "data.n"),
    (
        "int-neg",
        b'{"source": "bad", "data": {"l": [-9223372036854775809]}}',
        422,
        "data.l[0]",
    ),
    ("int-huge", b'{"source": "bad", "data": {"n": ' + b"9" * 400 + b"}}", 422, "data.n"),
    ("nesting-40", ('{"source": "bad", "data": ' + deep(40) + "}").encode(), (400, 422), None),
    ("nesting-500", ('{"source": "bad", "data": ' + deep(500) + "}").encode(), (400, 422), None),
    ("nesting-2000", ('{"source": "bad", "data": ' + deep(2000) + "}").encode(), (400, 422), None),
    (
        "nesting-in-list",
        ('{"source": "bad", "data": {"l": ' + "[" * 40 + "]" * 40 + "}}").encode(),
        (400, 422),
        None,
    ),
    ("nesting-100000", ('{"source": "bad", "data": ' + deep(100_000) + "}").encode(), 413, None),
]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [pytest.param(b, s, f, id=i) for i, b, s, f in BAD_SINGLE],
)
async def test_bad_single_event_is_a_problem_and_stores_nothing(
    client: httpx.AsyncClient, body: bytes, status: int | tuple[int, ...], field: str | None
) -> None:
    before = await count_all(client)
    r = await post_raw(client, "/ingest", body)
    allowed = status if isinstance(status, tuple) else (status,)
    assert r.status_code in allowed, r.text
    problem = assert_problem(r, r.status_code)
    if field is not None:
        assert problem["field"] == field
    assert await count_all(client) == before


@pytest.mark.parametrize(
    "occurred_at",
    ["2026-01-31T12:00:00+25:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"],
)
@pytest.mark.parametrize("path", ["/ingest", "/ingest/batch"])
async def test_occurred_at_out_of_range_is_422_not_500(
    client: httpx.AsyncClient, path: str, occurred_at: str
) -> None:
    before = await count_all(client)
    event = {"source": "bad", "occurred_at": occurred_at}
    if path == "/ingest":
        problem = assert_problem(await client.post(path, json=event), 422)
        assert problem["field"] == "occurred_at"
    else:
        r = await client.post(path, json={"events": [event]})
        assert r.status_code == 207, r.text
        assert r.json()["results"][0]["error"]["field"] == "events[0].occurred_at"
    assert await count_all(client) == before


async def test_years_before_1000_are_stored_as_rfc3339(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/ingest", json={"source": "api-old", "occurred_at": "0999-06-01T00:00:00Z"}
    )
    assert r.status_code == 202
    [stored] = await all_events(client, source="api-old")
    assert stored["occurred_at"] == "0999-06-01T00:00:00.000000Z"
    assert len(await all_events(client, source="api-old", until="1000-01-01T00:00:00Z")) == 1


async def test_body_over_limit_by_content_length(client: httpx.AsyncClient) -> None:
    before = await count_all(client)
    body = json.dumps({"source": "bad", "data": {"s": "x" * 70_000}}).encode()
    r = await post_raw(client, "/ingest", body)
    problem = assert_problem(r, 413)
    assert "INGESTD_MAX_EVENT_BYTES" in problem["detail"]
    assert await count_all(client) == before


async def test_body_over_limit_while_streaming_chunked(client: httpx.AsyncClient) -> None:
    before = await count_all(client)
    sent = []

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"source": "bad", "data": {"s": "'
        for _ in range(80):
            sent.append(1)
            yield b"x" * 1024
        yield b'"}}'

    r = await client.post("/ingest", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in r.request.headers
    assert r.request.headers["transfer-encoding"] == "chunked"
    assert_problem(r, 413)
    assert await count_all(client) == before


async def test_chunked_body_within_limit_is_accepted(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"source": "api-chunked", '
        yield b'"data": {"s": "' + b"y" * 30_000 + b'"}}'

    r = await client.post("/ingest", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 202, r.text
    [stored] = await all_events(client, source="api-chunked")
    assert stored["data"]["s"] == "y" * 30_000


async def test_batch_over_one_mib_by_content_length(client: httpx.AsyncClient) -> None:
    before = await count_all(client)
    events = [{"source": "bad", "data": {"s": "x" * 2000}} for _ in range(600)]
    r = await client.post("/ingest/batch", json={"events": events})
    problem = assert_problem(r, 413)
    assert "INGESTD_MAX_BATCH_BYTES" in problem["detail"]
    assert await count_all(client) == before


async def test_batch_over_one_mib_while_streaming(client: httpx.AsyncClient) -> None:
    before = await count_all(client)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"events": ['
        for i in range(600):
            yield (b"," if i else b"") + json.dumps(
                {"source": "bad", "data": {"s": "x" * 2000}}
            ).encode()
        yield b"]}"

    r = await client.post(
        "/ingest/batch", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(r, 413)
    assert await count_all(client) == before


async def test_batch_over_max_events(client: httpx.AsyncClient) -> None:
    before = await count_all(client)
    r = await client.post("/ingest/batch", json={"events": [{"source": "bad"}] * 1001})
    problem = assert_problem(r, 413)
    assert "1000" in problem["detail"]
    assert await count_all(client) == before


@pytest.mark.parametrize(
    "body",
    [b'{"events": {"source": "bad"}}', b'{"items": []}', b'"events"', b"{"],
)
async def test_bad_batch_envelope(client: httpx.AsyncClient, body: bytes) -> None:
    before = await count_all(client)
    r = await post_raw(client, "/ingest/batch", body)
    assert r.status_code in (400, 422)
    assert_problem(r, r.status_code)
    assert await count_all(client) == before


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
@pytest.mark.parametrize("path", ["/ingest", "/ingest/batch", "/api/events"])
async def test_non_json_content_type_is_415(
    client: httpx.AsyncClient, content_type: str, path: str
) -> None:
    before = await count_all(client)
    r = await post_raw(client, path, b'{"source": "bad"}', content_type)
    assert_problem(r, 415)
    assert await count_all(client) == before


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ["/ingest", "/ingest/batch", "/api/events"])
async def test_wrong_method_on_ingest_is_405(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    before = await count_all(client)
    r = await client.request(method, path, content=b'{"source": "bad"}')
    assert_problem(r, 405)
    assert "POST" in r.headers["allow"]
    assert await count_all(client) == before


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/events"), ("DELETE", "/health"), ("POST", "/ready")]
)
async def test_wrong_method_elsewhere_is_405_problem(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    assert_problem(await client.request(method, path), 405)


async def test_unknown_route_is_404_problem(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/nope"), 404)


async def test_bad_idempotency_header_is_422(client: httpx.AsyncClient) -> None:
    before = await count_all(client)
    r = await client.post("/ingest", json={"source": "bad"}, headers={"Idempotency-Key": "k" * 300})
    problem = assert_problem(r, 422)
    assert problem["field"] == "Idempotency-Key"
    assert await count_all(client) == before


# -- reads -----------------------------------------------------------------------------


async def test_events_filters_and_cursor_pagination(client: httpx.AsyncClient) -> None:
    events = [
        {
            "source": "api-page",
            "id": f"p{i}",
            "type": "even" if i % 2 == 0 else "odd",
            "occurred_at": f"2026-03-0{i + 1}T00:00:00Z",
        }
        for i in range(7)
    ]
    r = await client.post("/ingest/batch", json={"events": events})
    assert r.json()["accepted"] == 7
    # Pages of 3, oldest first, following next_cursor.
    seen: list[str] = []
    params = {"source": "api-page", "limit": "3"}
    pages = 0
    while True:
        page = (await client.get("/events", params=params)).json()
        pages += 1
        seen += [e["id"] for e in page["events"]]
        assert len(page["events"]) <= 3
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert seen == [f"p{i}" for i in range(7)]
    assert pages == 3
    odd = await all_events(client, source="api-page", type="odd")
    assert [e["id"] for e in odd] == ["p1", "p3", "p5"]
    window = await all_events(
        client, source="api-page", since="2026-03-02T00:00:00Z", until="2026-03-04T00:00:00Z"
    )
    assert [e["id"] for e in window] == ["p1", "p2"]
    # Time filters compare instants, whatever the offset notation.
    shifted = await all_events(
        client,
        source="api-page",
        since="2026-03-02T01:00:00+01:00",
        until="2026-03-03T01:00:00+01:00",
    )
    assert [e["id"] for e in shifted] == ["p1"]


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"cursor": "abc"}, 400),
        ({"since": "last week"}, 422),
        ({"until": "2026-13-01T00:00:00Z"}, 422),
        ({"limit": "0"}, 422),
        ({"limit": "100000"}, 422),
        ({"limit": "many"}, 422),
    ],
)
async def test_bad_event_queries_are_problems(
    client: httpx.AsyncClient, params: dict[str, str], status: int
) -> None:
    assert_problem(await client.get("/events", params=params), status)


async def test_status_of_unknown_event_is_404(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/ingest/no-such-event/status"), 404)


async def test_health_ready_metrics(client: httpx.AsyncClient) -> None:
    health = await client.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    ready = await client.get("/ready")
    assert ready.status_code == 200
    metrics = await client.get("/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "ingestd" in metrics.text


async def test_openapi_covers_every_route_including_the_fast_path(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for path, method in [
        ("/ingest", "post"),
        ("/ingest/batch", "post"),
        ("/api/events", "post"),
        ("/ingest/{event_id}/status", "get"),
        ("/events", "get"),
        ("/health", "get"),
        ("/ready", "get"),
        ("/metrics", "get"),
    ]:
        assert method in paths.get(path, {}), f"{method.upper()} {path} is not documented"
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "html" in docs.headers["content-type"]


def test_no_request_above_caused_a_500(shared: ServerProcess) -> None:
    # Runs last in this module: a 500 leaves "Exception in ASGI application" and a
    # traceback in the server's log.
    log = shared.logs()
    assert "Exception in ASGI application" not in log, log[-5000:]
    assert "Traceback" not in log, log[-5000:]
