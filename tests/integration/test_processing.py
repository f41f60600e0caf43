"""Processing on a real server: handler destinations, retries → dead, synchronous mode."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from support import ServerProcess, all_events, handler_env, running_server, wait_for

SHORT = [0, 0.1, 0.1]
DESTINATIONS = [
    {
        "name": "audit",
        "kind": "handler",
        "handler": "handlers.sinks:ok",
        "event_types": ["order.*"],
    },
    {
        "name": "mailer",
        "kind": "handler",
        "handler": "handlers.sinks:ok_async",
        "event_types": ["order.created"],
    },
    {
        "name": "broken",
        "kind": "handler",
        "handler": "handlers.sinks:fail",
        "event_types": ["fail.*"],
        "retry_schedule": SHORT,
    },
    {
        "name": "flaky",
        "kind": "handler",
        "handler": "handlers.sinks:flaky",
        "event_types": ["flaky.*", "mixed.*"],
        "retry_schedule": SHORT,
    },
    {
        "name": "broken-too",
        "kind": "handler",
        "handler": "handlers.sinks:fail",
        "event_types": ["mixed.*"],
        "retry_schedule": [0, 0.1],
    },
]


@pytest.fixture(scope="module")
def async_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("processing")
    with running_server(tmp, handler_env(tmp, DESTINATIONS)) as proc:
        yield proc


@pytest.fixture(scope="module")
def sync_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("sync")
    env = handler_env(tmp, DESTINATIONS, INGESTD_ASYNC_INGESTION="false")
    with running_server(tmp, env) as proc:
        yield proc


@pytest.fixture
async def client(async_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=async_server.url, timeout=30) as c:
        yield c


@pytest.fixture
async def sync_client(sync_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sync_server.url, timeout=30) as c:
        yield c


def new_id() -> str:
    return uuid.uuid4().hex


async def post(client: httpx.AsyncClient, event_type: str, **fields: Any) -> str:
    event_id = new_id()
    r = await client.post(
        "/ingest", json={"source": "proc", "id": event_id, "type": event_type, **fields}
    )
    assert r.status_code == 202, r.text
    return event_id


async def settled(client: httpx.AsyncClient, event_id: str, timeout: float = 15) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        r = await client.get(f"/ingest/{event_id}/status")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body if body["status"] in ("completed", "dead") else None

    result: dict[str, Any] = await wait_for(check, timeout=timeout)
    return result


def log_lines(server: ServerProcess, name: str) -> list[str]:
    path = server.tmp / name
    return path.read_text().splitlines() if path.exists() else []


# -- async mode ------------------------------------------------------------------------


async def test_event_reaches_completed_through_every_subscriber(
    client: httpx.AsyncClient, async_server: ServerProcess
) -> None:
    event_id = await post(client, "order.created", data={"total": 5})
    status = await settled(client, event_id)
    assert status["status"] == "completed"
    assert status["id"] == event_id
    assert status["last_error"] is None
    assert status["processed_at"] is not None
    assert status["received_at"] is not None
    by_name = {d["destination"]: d for d in status["destinations"]}
    assert set(by_name) == {"audit", "mailer"}
    for delivery in by_name.values():
        assert delivery["state"] == "succeeded"
        assert delivery["attempts"] == 1
        assert delivery["delivery_id"].startswith("msg_")
        assert delivery["finished_at"] is not None
    assert status["attempts"] == 2
    assert event_id in log_lines(async_server, "ok.log")
    # The async handler got the job too: its delivery id is the one the status shows.
    [line] = [x for x in log_lines(async_server, "ok_async.log") if x.startswith(event_id)]
    assert line.split() == [event_id, by_name["mailer"]["delivery_id"], "1"]


async def test_event_type_globs_select_destinations(client: httpx.AsyncClient) -> None:
    event_id = await post(client, "order.refunded")
    status = await settled(client, event_id)
    assert [d["destination"] for d in status["destinations"]] == ["audit"]


async def test_event_without_subscribers_is_completed_at_once(client: httpx.AsyncClient) -> None:
    event_id = await post(client, "page.viewed")
    r = await client.get(f"/ingest/{event_id}/status")
    assert r.json()["status"] == "completed"
    assert r.json()["destinations"] == []


async def test_handler_raising_retries_then_dead(
    client: httpx.AsyncClient, async_server: ServerProcess
) -> None:
    event_id = await post(client, "fail.always")
    status = await settled(client, event_id)
    assert status["status"] == "dead"
    [delivery] = status["destinations"]
    assert delivery["destination"] == "broken"
    assert delivery["state"] == "dead"
    assert delivery["attempts"] == len(SHORT)
    assert "RuntimeError" in delivery["last_error"]
    assert f"handler refused {event_id}" in delivery["last_error"]
    assert "exhausted" in delivery["last_error"]
    assert status["last_error"] == delivery["last_error"]
    assert log_lines(async_server, "fail.log").count(event_id) == len(SHORT)
    # Dead-lettered, never dropped: the event is still stored.
    assert event_id in [
        e["id"] for e in await all_events(client, source="proc", type="fail.always")
    ]


async def test_handler_failing_twice_then_succeeding_is_completed(
    client: httpx.AsyncClient,
) -> None:
    event_id = await post(client, "flaky.once")
    status = await settled(client, event_id)
    assert status["status"] == "completed"
    [delivery] = status["destinations"]
    assert delivery["state"] == "succeeded"
    assert delivery["attempts"] == 3
    assert delivery["last_error"] is None


async def test_each_destination_retries_and_dies_on_its_own(client: httpx.AsyncClient) -> None:
    event_id = await post(client, "mixed.case")
    status = await settled(client, event_id)
    by_name = {d["destination"]: d for d in status["destinations"]}
    assert by_name["flaky"]["state"] == "succeeded"
    assert by_name["flaky"]["attempts"] == 3
    assert by_name["broken-too"]["state"] == "dead"
    assert by_name["broken-too"]["attempts"] == 2
    assert status["status"] == "dead"


async def test_a_batch_is_processed_event_by_event(client: httpx.AsyncClient) -> None:
    ids = [new_id() for _ in range(30)]
    events = [{"source": "proc", "id": i, "type": "order.created"} for i in ids]
    r = await client.post("/ingest/batch", json={"events": events})
    assert r.json()["accepted"] == 30
    for event_id in ids:
        status = await settled(client, event_id)
        assert status["status"] == "completed"
        assert len(status["destinations"]) == 2


async def test_backlog_gauge_and_delivery_metrics(client: httpx.AsyncClient) -> None:
    await settled(client, await post(client, "order.created"))
    text = (await client.get("/metrics")).text
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    succeeded = 'ingestd_deliveries_total{destination="audit",verdict="succeeded"}'
    assert samples[succeeded] >= 1


# -- synchronous mode ------------------------------------------------------------------


async def test_sync_mode_answers_200_with_the_processing_result(
    sync_client: httpx.AsyncClient, sync_server: ServerProcess
) -> None:
    event_id = new_id()
    event = {"source": "sync", "id": event_id, "type": "order.created", "data": {"n": 1}}
    r = await sync_client.post("/ingest", json=event)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == event_id
    assert body["status"] == "completed"
    assert body["status_url"] == f"/ingest/{event_id}/status"
    assert body["idempotency_key"] == f"sync:{event_id}"
    assert {d["destination"]: d["state"] for d in body["destinations"]} == {
        "audit": "succeeded",
        "mailer": "succeeded",
    }
    # The handler already ran when the answer came.
    assert event_id in log_lines(sync_server, "ok.log")
    # Durable all the same.
    assert [e["id"] for e in await all_events(sync_client, source="sync")].count(event_id) == 1


async def test_sync_mode_still_deduplicates(sync_client: httpx.AsyncClient) -> None:
    event = {"source": "sync", "id": new_id(), "type": "order.created"}
    assert (await sync_client.post("/ingest", json=event)).status_code == 200
    again = await sync_client.post("/ingest", json=event)
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["status"] == "duplicate"
    assert again.json()["id"] == event["id"]
    mismatch = await sync_client.post("/ingest", json={**event, "data": {"other": True}})
    assert mismatch.status_code == 422
    stored = await all_events(sync_client, source="sync")
    assert [e["id"] for e in stored].count(event["id"]) == 1


async def test_sync_mode_concurrent_identical_requests_process_once(
    sync_client: httpx.AsyncClient, sync_server: ServerProcess
) -> None:
    event = {"source": "sync", "id": new_id(), "type": "order.refunded"}
    responses = await asyncio.gather(*(sync_client.post("/ingest", json=event) for _ in range(20)))
    statuses = sorted(r.json()["status"] for r in responses)
    assert statuses == ["completed"] + ["duplicate"] * 19
    assert all(r.status_code == 200 for r in responses)
    assert log_lines(sync_server, "ok.log").count(event["id"]) == 1


async def test_sync_mode_reports_a_failing_delivery(sync_client: httpx.AsyncClient) -> None:
    event_id = new_id()
    r = await sync_client.post("/ingest", json={"source": "sync", "id": event_id, "type": "fail.x"})
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "failed"  # retrying in the background
    [delivery] = body["destinations"]
    assert delivery["attempts"] == 1
    assert "RuntimeError" in delivery["last_error"]
    assert (await settled(sync_client, event_id))["status"] == "dead"


async def test_sync_mode_batch_reports_each_item(sync_client: httpx.AsyncClient) -> None:
    ids = [new_id() for _ in range(3)]
    events = [{"source": "sync", "id": i, "type": "order.created"} for i in ids]
    events.append({"source": "sync", "id": ids[0], "type": "order.created"})
    events.append({"source": "sync", "data": "not an object"})
    r = await sync_client.post("/ingest/batch", json={"events": events})
    assert r.status_code == 207
    results = r.json()["results"]
    assert [x["status"] for x in results] == [
        "completed",
        "completed",
        "completed",
        "duplicate",
        "rejected",
    ]
    assert [x["id"] for x in results[:4]] == [*ids, ids[0]]
