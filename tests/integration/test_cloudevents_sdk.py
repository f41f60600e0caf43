"""CloudEvents 1.0 sent with the official Python SDK (`cloudevents` on PyPI) to a real
`ingestd serve`: structured, binary and batched modes, the envelope they become, the
`source:id` idempotency key, refusals; and a webhook opted into CloudEvents, parsed by the
SDK at a real loopback receiver."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http, to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v03.event import CloudEvent as CloudEventV03
from cloudevents.core.v1.event import CloudEvent
from standardwebhooks import Webhook

from receivers import Receiver, start_ingestd
from support import ServerProcess, all_events, running_server, wait_for

FORMAT = JSONFormat()
WHEN = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("ce")) as proc:
        yield proc


@pytest.fixture
async def client(shared: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=shared.url, timeout=10) as c:
        yield c


def cloudevent(source: str, ident: str, **extra: Any) -> CloudEvent:
    attributes = {
        "id": ident,
        "source": source,
        "type": "com.example.order.paid",
        "time": WHEN,
        "subject": "orders/42",
        **extra,
    }
    return CloudEvent(attributes=attributes, data={"total": 42, "currency": "EUR"})


async def post(client: httpx.AsyncClient, message: HTTPMessage, path: str = "/ingest") -> Any:
    return await client.post(path, content=message.body, headers=message.headers)


def assert_problem(response: httpx.Response, status: int, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status and problem["detail"]
    if field is not None:
        assert problem["field"] == field, problem


async def assert_stored(client: httpx.AsyncClient, source: str, ident: str) -> None:
    [stored] = await all_events(client, source=source)
    assert stored["id"] == ident
    assert stored["source"] == source
    assert stored["type"] == "com.example.order.paid"
    assert stored["occurred_at"] == "2026-03-01T09:30:15.123456Z"
    assert stored["subject"] == "orders/42"
    assert stored["data"] == {"total": 42, "currency": "EUR"}


@pytest.mark.parametrize("mode", [to_structured, to_binary], ids=["structured", "binary"])
@pytest.mark.parametrize("path", ["/ingest", "/api/events"])
async def test_one_event_maps_onto_the_envelope_and_is_idempotent(
    client: httpx.AsyncClient, mode: Any, path: str
) -> None:
    # A space and a non-ASCII letter: binary mode percent-encodes them in ce-source.
    case = f"{mode.__name__}{path.replace('/', '-')}"
    source, ident = f"/shop/{case} caf\u00e9", f"evt-{case}"
    message = mode(cloudevent(source, ident), FORMAT)
    first = await post(client, message, path)
    assert first.status_code == 202, first.text
    assert first.json()["id"] == first.json()["event_id"] == ident
    assert first.json()["idempotency_key"] == f"{source}:{ident}"
    await assert_stored(client, source, ident)

    again = await post(client, message, path)
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "duplicate"
    assert again.json()["original_id"] == ident
    assert len(await all_events(client, source=source)) == 1


async def test_binary_mode_without_data_is_an_event_with_empty_data(
    client: httpx.AsyncClient,
) -> None:
    event = CloudEvent(attributes={"id": "empty-1", "source": "/ce-empty", "type": "ping"})
    message = to_binary(event, FORMAT)
    assert message.body == b""
    r = await post(client, message)
    assert r.status_code == 202, r.text
    [stored] = await all_events(client, source="/ce-empty")
    assert (stored["type"], stored["data"]) == ("ping", {})


@pytest.mark.parametrize("path", ["/ingest/batch", "/ingest"])
async def test_batched_mode_built_from_the_sdks_structured_json(
    client: httpx.AsyncClient, path: str
) -> None:
    # The Python SDK has no batch writer: a batch is a JSON array of structured events.
    source = f"/ce-batch{path.replace('/', '-')}"
    items = [
        json.loads(to_structured(cloudevent(source, f"{source}-{i}"), FORMAT).body)
        for i in range(3)
    ]
    del items[1]["type"]  # one bad item must not spoil the others
    body = json.dumps(items).encode()
    headers = {"content-type": "application/cloudevents-batch+json"}
    r = await client.post(path, content=body, headers=headers)
    assert r.status_code == 207, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["accepted", "rejected", "accepted"]
    assert results[0]["idempotency_key"] == f"{source}:{source}-0"
    assert results[1]["error"]["status"] == 422
    assert results[1]["error"]["field"] == "events[1].type"
    stored = {e["id"]: e for e in await all_events(client, source=source)}
    assert sorted(stored) == [f"{source}-0", f"{source}-2"]
    last = stored[f"{source}-2"]
    assert last["occurred_at"] == "2026-03-01T09:30:15.123456Z"
    assert last["subject"] == "orders/42"
    assert last["data"] == {"total": 42, "currency": "EUR"}

    again = await client.post(path, content=body, headers=headers)
    assert [x["status"] for x in again.json()["results"]] == ["duplicate", "rejected", "duplicate"]
    assert len(await all_events(client, source=source)) == 2


@pytest.mark.parametrize("missing", ["id", "source", "type"])
async def test_structured_event_missing_a_required_attribute_is_422(
    client: httpx.AsyncClient, missing: str
) -> None:
    doc = json.loads(to_structured(cloudevent("/ce-missing", f"m-{missing}"), FORMAT).body)
    del doc[missing]
    r = await client.post(
        "/ingest",
        content=json.dumps(doc).encode(),
        headers={"content-type": "application/cloudevents+json"},
    )
    assert_problem(r, 422, missing)


@pytest.mark.parametrize("missing", ["ce-id", "ce-source", "ce-type"])
async def test_binary_event_missing_a_required_header_is_422(
    client: httpx.AsyncClient, missing: str
) -> None:
    message = to_binary(cloudevent("/ce-missing-bin", f"mb-{missing}"), FORMAT)
    headers = {k: v for k, v in message.headers.items() if k != missing}
    r = await client.post("/ingest", content=message.body, headers=headers)
    assert_problem(r, 422, missing.removeprefix("ce-"))


@pytest.mark.parametrize("mode", [to_structured, to_binary], ids=["structured", "binary"])
async def test_unsupported_specversion_is_422(client: httpx.AsyncClient, mode: Any) -> None:
    old = CloudEventV03(
        attributes={"id": "v03-1", "source": "/ce-v03", "type": "legacy"}, data={"a": 1}
    )
    r = await post(client, mode(old, FORMAT))
    assert_problem(r, 422, "specversion")
    assert "0.3" in r.json()["detail"]
    assert await all_events(client, source="/ce-v03") == []


async def test_a_webhook_opted_into_cloudevents_sends_one_the_sdk_parses(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    secret = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    toml = f"""
[[destinations]]
name = "ce-hook"
kind = "webhook"
url = "{receiver.url("/ce")}"
format = "cloudevents"
secret = "{secret}"
"""
    server = await start_ingestd(tmp_path, toml)
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            event = {
                "id": "hook-1",
                "source": "shop",
                "type": "order.paid",
                "occurred_at": "2026-03-01T10:30:15+01:00",
                "subject": "orders/7",
                "actor_id": "u-9",
                "data": {"total": 7},
            }
            assert (await http.post("/ingest", json=event)).status_code == 202
            untyped = {"id": "hook-2", "source": "shop"}
            assert (await http.post("/ingest", json=untyped)).status_code == 202

        async def both() -> bool:
            return len(receiver.received("/ce")) >= 2

        await wait_for(both)
    finally:
        await server.stop()
        await receiver.stop()
    by_id = {}
    for request in receiver.received("/ce"):
        assert request.headers["Content-Type"] == "application/cloudevents+json"
        # Still signed per Standard Webhooks, over the CloudEvent body.
        Webhook(secret).verify(request.body, request.headers)
        parsed = from_http(HTTPMessage(request.headers, request.body), FORMAT)
        by_id[parsed.get_id()] = parsed
    ce = by_id["hook-1"]
    assert ce.get_specversion() == "1.0"
    assert (ce.get_source(), ce.get_type(), ce.get_subject()) == ("shop", "order.paid", "orders/7")
    assert ce.get_time() == datetime(2026, 3, 1, 9, 30, 15, tzinfo=UTC)
    assert ce.get_datacontenttype() == "application/json"
    assert ce.get_data() == {"total": 7}
    assert ce.get_extension("actorid") == "u-9"
    # CloudEvents requires a type; an event stored without one gets a fixed one.
    assert by_id["hook-2"].get_type() == "ingestd.untyped"
    assert by_id["hook-2"].get_subject() is None
