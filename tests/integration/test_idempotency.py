"""Idempotent acceptance on a real server: duplicates, key reuse, concurrency, scope, restarts."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from support import ServerProcess, all_events, free_port, pg_database, running_server


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server per backend for the module; each test uses its own sources (see `ns`)."""
    tmp = tmp_path_factory.mktemp("idem")
    if request.param == "sqlite":
        with running_server(tmp) as proc:
            yield proc
        return
    with pg_database() as url, running_server(tmp, {"INGESTD_DATABASE_URL": url}) as proc:
        yield proc


@pytest.fixture
async def client(shared: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=shared.url, timeout=30) as c:
        yield c


@pytest.fixture
def ns(request: pytest.FixtureRequest) -> str:
    """A prefix unique to this test for sources and ids on the shared server."""
    return f"{request.node.name}-{uuid.uuid4().hex[:6]}-"


def assert_duplicate(r: httpx.Response, original: str) -> None:
    assert r.status_code == 200, r.text
    assert r.headers["idempotent-replayed"] == "true"
    body = r.json()
    assert body["status"] == "duplicate"
    assert body["id"] == original


async def test_same_id_same_payload_is_a_duplicate(client: httpx.AsyncClient, ns: str) -> None:
    event = {"source": ns, "id": ns + "o-1", "type": "order.created", "data": {"n": 1}}
    first = await client.post("/ingest", json=event)
    assert first.status_code == 202
    assert "idempotent-replayed" not in first.headers
    for _ in range(3):
        assert_duplicate(await client.post("/ingest", json=event), ns + "o-1")
    assert [e["id"] for e in await all_events(client, source=ns)] == [ns + "o-1"]


async def test_same_id_other_payload_is_422_and_changes_nothing(
    client: httpx.AsyncClient, ns: str
) -> None:
    event = {"source": ns, "id": ns + "o-2", "type": "order.created", "data": {"n": 1}}
    assert (await client.post("/ingest", json=event)).status_code == 202
    r = await client.post("/ingest", json={**event, "data": {"n": 2}})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["type"].endswith("idempotency-key-reused")
    assert ns + "o-2" in problem["detail"]
    [stored] = await all_events(client, source=ns)
    assert stored["data"] == {"n": 1}
    # The original payload is still recognised afterwards.
    assert_duplicate(await client.post("/ingest", json=event), ns + "o-2")


async def test_equivalent_payloads_are_the_same_payload(client: httpx.AsyncClient, ns: str) -> None:
    first = {
        "source": ns,
        "id": "o-3",
        "type": "t",
        "occurred_at": "2026-01-31T13:00:00+01:00",
        "data": {"a": 1, "b": {"x": [1, 2]}},
    }
    same = {
        "data": {"b": {"x": [1, 2]}, "a": 1},
        "timestamp": "2026-01-31T12:00:00Z",
        "event_type": "t",
        "event_id": "o-3",
        "source": ns,
    }
    assert (await client.post("/ingest", json={**first, "id": ns + "o-3"})).status_code == 202
    assert_duplicate(
        await client.post("/ingest", json={**same, "event_id": ns + "o-3"}), ns + "o-3"
    )


@pytest.mark.parametrize("header", ["Idempotency-Key", "X-Idempotency-Key", "X-Event-Id"])
async def test_header_key_without_id(client: httpx.AsyncClient, ns: str, header: str) -> None:
    event = {"source": ns, "type": "page.viewed", "data": {"path": "/"}}
    first = await client.post("/ingest", json=event, headers={header: "req-1"})
    assert first.status_code == 202
    original = first.json()["id"]
    assert first.json()["idempotency_key"] == "req-1"
    assert_duplicate(await client.post("/ingest", json=event, headers={header: "req-1"}), original)
    mismatch = await client.post(
        "/ingest", json={**event, "data": {"path": "/x"}}, headers={header: "req-1"}
    )
    assert mismatch.status_code == 422
    # Without the key the same payload is a new event.
    assert (await client.post("/ingest", json=event)).status_code == 202
    assert len(await all_events(client, source=ns)) == 2


async def test_header_key_wins_over_source_and_id(client: httpx.AsyncClient, ns: str) -> None:
    event = {"source": ns, "id": ns + "h-1"}
    first = await client.post("/ingest", json=event, headers={"Idempotency-Key": "k"})
    assert first.status_code == 202
    # Same id, another key: the id is taken by another event.
    r = await client.post("/ingest", json=event, headers={"Idempotency-Key": "other"})
    assert r.status_code == 409
    assert r.json()["type"].endswith("event-id-conflict")
    assert len(await all_events(client, source=ns)) == 1


async def test_header_keys_are_scoped_by_source(client: httpx.AsyncClient, ns: str) -> None:
    headers = {"Idempotency-Key": ns + "shared-key"}
    event_a = {"source": ns + "a", "data": {"v": 1}}
    event_b = {"source": ns + "b", "data": {"v": 1}}
    a = await client.post("/ingest", json=event_a, headers=headers)
    b = await client.post("/ingest", json=event_b, headers=headers)
    assert a.status_code == b.status_code == 202
    assert a.json()["id"] != b.json()["id"]
    assert_duplicate(await client.post("/ingest", json=event_b, headers=headers), b.json()["id"])
    assert len(await all_events(client, source=ns + "a")) == 1
    assert len(await all_events(client, source=ns + "b")) == 1


async def test_same_id_from_another_source_is_a_conflict(
    client: httpx.AsyncClient, ns: str
) -> None:
    shared_id = ns + "shared"
    a = await client.post("/ingest", json={"source": ns + "a", "id": shared_id})
    assert a.status_code == 202
    r = await client.post("/ingest", json={"source": ns + "b", "id": shared_id})
    assert r.status_code == 409
    assert await all_events(client, source=ns + "b") == []
    # The failed attempt left no key behind: a retry of it is still a conflict, not a 200.
    again = await client.post("/ingest", json={"source": ns + "b", "id": shared_id})
    assert again.status_code == 409


async def test_fifty_concurrent_identical_requests_accept_once(
    client: httpx.AsyncClient, ns: str
) -> None:
    event = {"source": ns, "id": ns + "r-1", "type": "t", "data": {"v": 1}}
    responses = await asyncio.gather(*(client.post("/ingest", json=event) for _ in range(50)))
    codes = Counter(r.status_code for r in responses)
    assert codes == {202: 1, 200: 49}
    assert {r.json()["id"] for r in responses} == {ns + "r-1"}
    replayed = [r.headers.get("idempotent-replayed") for r in responses if r.status_code == 200]
    assert replayed == ["true"] * 49
    assert [e["id"] for e in await all_events(client, source=ns)] == [ns + "r-1"]


async def test_fifty_concurrent_requests_with_one_header_key(
    client: httpx.AsyncClient, ns: str
) -> None:
    event = {"source": ns, "type": "t", "data": {"v": 2}}
    headers = {"Idempotency-Key": "race-key"}
    responses = await asyncio.gather(
        *(client.post("/ingest", json=event, headers=headers) for _ in range(50))
    )
    codes = Counter(r.status_code for r in responses)
    assert codes == {202: 1, 200: 49}
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    assert [e["id"] for e in await all_events(client, source=ns)] == list(ids)


async def test_concurrent_mixed_payloads_for_one_key(client: httpx.AsyncClient, ns: str) -> None:
    # Whichever payload wins, every other request agrees with it: 200 if equal, else 422.
    payloads = [{"source": ns, "id": ns + "r-2", "data": {"v": i % 2}} for i in range(40)]
    responses = await asyncio.gather(*(client.post("/ingest", json=p) for p in payloads))
    winner = [p for p, r in zip(payloads, responses, strict=True) if r.status_code == 202]
    assert len(winner) == 1
    for p, r in zip(payloads, responses, strict=True):
        if r.status_code != 202:
            assert r.status_code == (200 if p == winner[0] else 422)
    [stored] = await all_events(client, source=ns)
    assert stored["data"] == winner[0]["data"]


async def test_in_batch_duplicates(client: httpx.AsyncClient, ns: str) -> None:
    same = {"source": ns, "id": ns + "d-1", "type": "t", "data": {"v": 1}}
    other = {"source": ns, "id": ns + "d-2"}
    events = [same, {**same, "data": {"v": 2}}, dict(same), other]
    r = await client.post("/ingest/batch", json={"events": events})
    assert r.status_code == 207
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["accepted", "rejected", "duplicate", "accepted"]
    assert results[1]["error"]["status"] == 422
    assert results[1]["error"]["field"] == "events[1]"
    assert results[2]["id"] == ns + "d-1"
    stored = await all_events(client, source=ns)
    assert [(e["id"], e["data"]) for e in stored] == [(ns + "d-1", {"v": 1}), (ns + "d-2", {})]
    # A single request repeating a batch item is a duplicate of it.
    assert_duplicate(await client.post("/ingest", json=same), ns + "d-1")


async def test_concurrent_batches_sharing_events(client: httpx.AsyncClient, ns: str) -> None:
    events = [{"source": ns, "id": f"{ns}s-{i}"} for i in range(100)]
    batches = [events[i : i + 60] for i in (0, 20, 40)]
    responses = await asyncio.gather(
        *(client.post("/ingest/batch", json={"events": b}) for b in batches)
    )
    accepted = Counter(
        x["id"] for r in responses for x in r.json()["results"] if x["status"] == "accepted"
    )
    assert set(accepted) == {e["id"] for e in events}
    assert set(accepted.values()) == {1}
    stored = sorted(e["id"] for e in await all_events(client, source=ns))
    assert stored == sorted(e["id"] for e in events)


async def test_keys_survive_a_restart(tmp_path: Path) -> None:
    """Keys live in the store, not in a cache."""
    server = ServerProcess(tmp_path, port=free_port())
    await server.start()
    event = {"source": "s", "type": "t"}
    headers = {"Idempotency-Key": "persist-1"}
    try:
        async with httpx.AsyncClient(base_url=server.url) as c:
            first = await c.post("/ingest", json=event, headers=headers)
            assert first.status_code == 202
            assert (await c.post("/ingest", json={"source": "s", "id": "p-2"})).status_code == 202
    finally:
        await server.stop()
    server = ServerProcess(tmp_path, port=free_port())
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as c:
            assert_duplicate(
                await c.post("/ingest", json=event, headers=headers), first.json()["id"]
            )
            assert_duplicate(await c.post("/ingest", json={"source": "s", "id": "p-2"}), "p-2")
            assert len(await all_events(c)) == 2
    finally:
        await server.stop()


async def test_keys_expire_after_the_ttl(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, port=free_port(), env={"INGESTD_IDEMPOTENCY_TTL": "0.5"})
    await server.start()
    headers = {"Idempotency-Key": "short-lived"}
    try:
        async with httpx.AsyncClient(base_url=server.url) as c:
            first = await c.post("/ingest", json={"source": "s"}, headers=headers)
            assert first.status_code == 202
            await asyncio.sleep(0.7)
            again = await c.post("/ingest", json={"source": "s"}, headers=headers)
            assert again.status_code == 202
            assert again.json()["id"] != first.json()["id"]
            # The renewed key now protects the new event.
            assert_duplicate(
                await c.post("/ingest", json={"source": "s"}, headers=headers), again.json()["id"]
            )
    finally:
        await server.stop()
