"""Requests as existing senders make them, against a real `ingestd serve` configured by
TOML: per-source derived keys, `event_id`/`original_id` in answers on every path and key
header, and an event without a type reaching only destinations that take every type."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from receivers import Receiver, start_ingestd
from support import ServerProcess, all_events, wait_for

TOML = """
[sources.legacy]
derive_key = ["source", "type", "actor_id", "occurred_at"]

[[destinations]]
name = "everything"
kind = "webhook"
url = "{all}"

[[destinations]]
name = "orders-only"
kind = "webhook"
url = "{orders}"
event_types = ["order.*"]
"""


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


@pytest.fixture
async def configured(tmp_path: Path, receiver: Receiver) -> AsyncIterator[ServerProcess]:
    toml = TOML.format(all=receiver.url("/all"), orders=receiver.url("/orders"))
    proc = await start_ingestd(tmp_path, toml)
    yield proc
    await proc.stop()


@pytest.fixture
async def http(configured: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=configured.url, timeout=10) as c:
        yield c


def assert_problem(r: httpx.Response, status: int, field: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["detail"] and r.json()["field"] == field


async def test_a_source_configured_to_derive_its_key(http: httpx.AsyncClient) -> None:
    event = {
        "source": "legacy",
        "event_type": "user.login",
        "actor_id": "u-1",
        "timestamp": "2026-04-01T08:00:00Z",
        "data": {"ip": "10.0.0.1"},
    }
    first = await http.post("/api/events", json=event)
    assert first.status_code == 202, first.text
    body = first.json()
    assert body["idempotency_key"] == "legacy:user.login:u-1:2026-04-01T08:00:00.000000Z"
    assert body["event_id"] == body["id"]

    again = await http.post("/ingest", json=event)
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "duplicate"
    assert again.json()["id"] == again.json()["original_id"] == body["id"]

    other_actor = await http.post("/ingest", json={**event, "actor_id": "u-2"})
    assert other_actor.status_code == 202
    assert_problem(
        await http.post("/ingest", json={k: v for k, v in event.items() if k != "actor_id"}),
        422,
        "actor_id",
    )
    # Sources without the rule keep the plain behaviour: no id, no key, a new event each time.
    plain = {**event, "source": "elsewhere"}
    assert (await http.post("/ingest", json=plain)).status_code == 202
    assert (await http.post("/ingest", json=plain)).status_code == 202
    assert len(await all_events(http, source="legacy")) == 2
    assert len(await all_events(http, source="elsewhere")) == 2


@pytest.mark.parametrize("path", ["/ingest", "/api/events"])
@pytest.mark.parametrize("header", ["Idempotency-Key", "X-Idempotency-Key", "X-Event-Id"])
async def test_answers_carry_event_id_and_original_id(
    http: httpx.AsyncClient, path: str, header: str
) -> None:
    source = f"shapes{path.replace('/', '-')}-{header}"
    event = {"source": source, "event_type": "page.viewed", "data": {"n": 1}}
    first = await http.post(path, json=event, headers={header: "k-1"})
    assert first.status_code == 202, first.text
    accepted = first.json()
    assert accepted["status"] == "accepted"
    assert accepted["event_id"] == accepted["id"]
    assert accepted["idempotency_key"] == "k-1"
    again = await http.post(path, json=event, headers={header: "k-1"})
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["original_id"] == again.json()["id"] == accepted["id"]
    changed = await http.post(path, json={**event, "data": {"n": 2}}, headers={header: "k-1"})
    assert changed.status_code == 422
    assert changed.headers["content-type"].startswith("application/problem+json")


async def test_an_event_without_type_goes_only_to_destinations_of_every_type(
    http: httpx.AsyncClient, receiver: Receiver
) -> None:
    untyped = await http.post("/ingest", json={"id": "test1", "source": "a5"})
    assert untyped.status_code == 202, untyped.text
    typed = await http.post("/ingest", json={"id": "o-1", "source": "a5", "type": "order.paid"})
    assert typed.status_code == 202

    async def completed() -> bool:
        states = [(await http.get(f"/ingest/{i}/status")).json() for i in ("test1", "o-1")]
        return all(s["status"] == "completed" for s in states)

    await wait_for(completed)
    status = (await http.get("/ingest/test1/status")).json()
    assert [d["destination"] for d in status["destinations"]] == ["everything"]
    assert len(receiver.received("/all")) == 2
    [order] = receiver.received("/orders")
    assert b'"o-1"' in order.body
    [stored] = [e for e in await all_events(http, source="a5") if e["id"] == "test1"]
    assert stored["type"] is None
