"""The pull inbox: long-poll, lease, acknowledge; unacknowledged events come back."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from receivers import Receiver, start_ingestd

TOML = """
[[destinations]]
name = "box"
kind = "inbox"
event_types = ["order.*"]
"""


async def test_lease_ack_and_redelivery_after_the_lease(tmp_path: Path) -> None:
    server = await start_ingestd(tmp_path, TOML)
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            ids = []
            for i in range(3):
                r = await client.post(
                    "/ingest", json={"source": "s", "type": "order.x", "data": {"i": i}}
                )
                ids.append(r.json()["id"])
            await asyncio.sleep(0.3)  # the worker must not push them anywhere
            got = (await client.get("/inbox/box", params={"limit": 2, "visibility": 1})).json()
            assert [e["event"]["id"] for e in got["events"]] == ids[:2]
            assert got["lease_until"]
            first, second = got["events"]
            r = await client.post("/inbox/box/ack", json={"ids": [first["id"]]})
            assert r.json() == {"acked": 1}
            rest = (await client.get("/inbox/box", params={"limit": 10, "visibility": 1})).json()
            assert [e["event"]["id"] for e in rest["events"]] == [ids[2]]
            await asyncio.sleep(1.2)
            again = (await client.get("/inbox/box", params={"limit": 10, "visibility": 30})).json()
            again_ids = [e["id"] for e in again["events"]]
            assert second["id"] in again_ids and first["id"] not in again_ids
            assert {e["attempt"] for e in again["events"]} == {2}
            r = await client.post("/inbox/box/ack", json={"ids": again_ids})
            assert r.json() == {"acked": 2}
            status = (await client.get(f"/ingest/{ids[1]}/status")).json()
            assert status["status"] == "completed"
            empty = (await client.get("/inbox/box", params={"wait": 0})).json()
            assert empty["events"] == []
    finally:
        await server.stop()


async def test_long_poll_returns_when_an_event_arrives(tmp_path: Path) -> None:
    # The fallback poll is 30 s and the long-poll may wait 20 s: only the wake-up from the
    # commit can answer within the client's 10 s timeout.
    server = await start_ingestd(tmp_path, TOML, INGESTD_POLL_INTERVAL="30")
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            for n in range(2):  # the second time, a waiter that was woken once waits again
                poll = asyncio.create_task(client.get("/inbox/box", params={"wait": 20}))
                await asyncio.sleep(0.5)
                assert not poll.done()
                r = await client.post("/ingest", json={"source": "s", "type": "order.y"})
                got = (await poll).json()
                assert [e["event"]["id"] for e in got["events"]] == [r.json()["id"]], n
            other = asyncio.create_task(client.get("/inbox/box", params={"wait": 1}))
            await client.post("/ingest", json={"source": "s", "type": "user.z"})
            assert (await other).json()["events"] == []  # not for this inbox: no wake-up
            missing = await client.get("/inbox/nope")
            assert missing.status_code == 404
            assert missing.headers["content-type"] == "application/problem+json"
            bad = await client.post("/inbox/box/ack", json={"ids": "x"})
            assert bad.status_code == 422
    finally:
        await server.stop()


async def test_synchronous_mode_reports_an_inbox_delivery_as_queued(tmp_path: Path) -> None:
    receiver = await Receiver().start()
    toml = (
        TOML
        + f"""
[[destinations]]
name = "hook"
kind = "webhook"
url = "{receiver.url()}"
"""
    )
    server = await start_ingestd(tmp_path, toml, INGESTD_ASYNC_INGESTION="false")
    try:
        # Without the inbox exception the request waits 60 s for a consumer: the client's
        # 10 s timeout fails the test.
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            r = await client.post("/ingest", json={"source": "s", "type": "order.z"})
            assert r.status_code == 200, r.text
            by_name = {d["destination"]: d for d in r.json()["destinations"]}
            assert by_name["hook"]["state"] == "succeeded"
            assert by_name["box"]["state"] == "pending"
            assert by_name["box"]["queued"] == "waiting in the inbox: GET /inbox/box"
            assert len(receiver.received()) == 1
            got = (await client.get("/inbox/box")).json()
            assert [e["event"]["id"] for e in got["events"]] == [r.json()["id"]]
    finally:
        await server.stop()
        await receiver.stop()


@pytest.mark.postgres
async def test_long_poll_wakes_for_a_commit_made_by_another_api_process(
    tmp_path: Path, pg_url: str
) -> None:
    # Two `ingestd api` processes on one PostgreSQL database: the event is posted to one,
    # the long-poll waits on the other. The fallback poll is 30 s, so only the store's
    # NOTIFY can answer within the client's 10 s timeout.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    env = {"INGESTD_POLL_INTERVAL": "30", "INGESTD_DATABASE_URL": pg_url}
    waiting = await start_ingestd(tmp_path / "a", TOML, command="api", **env)
    sending = await start_ingestd(tmp_path / "b", TOML, command="api", **env)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            for n in range(2):
                poll = asyncio.create_task(
                    client.get(f"{waiting.url}/inbox/box", params={"wait": 20})
                )
                await asyncio.sleep(0.5)
                assert not poll.done()
                r = await client.post(
                    f"{sending.url}/ingest", json={"source": "s", "type": "order.y"}
                )
                assert r.status_code == 202, r.text
                got = (await poll).json()
                assert [e["event"]["id"] for e in got["events"]] == [r.json()["id"]], n
    finally:
        await sending.stop()
        await waiting.stop()
