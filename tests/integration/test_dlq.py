"""Dead letters: listed with filters, replayed by id and by filter (same webhook-id),
deleted; and the same from the CLI."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from receivers import Receiver, start_ingestd
from support import INGESTD, wait_for


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


async def test_dead_letters_list_replay_delete_and_cli(tmp_path: Path, receiver: Receiver) -> None:
    receiver.behave("/down", status=500)
    server = await start_ingestd(
        tmp_path,
        f"""
[[destinations]]
name = "down"
kind = "webhook"
url = "{receiver.url("/down")}"
retry_schedule = [0, 0.1]
""",
        INGESTD_BREAKER_COOLDOWN="0.5",  # six failures in a row open the breaker
    )
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            for type_ in ("a.x", "a.x", "b.y"):
                r = await client.post("/ingest", json={"source": "s", "type": type_})
                assert r.status_code == 202

            async def three_dead() -> list[dict[str, Any]]:
                items: list[dict[str, Any]] = (await client.get("/dlq")).json()["dead_letters"]
                return items if len(items) == 3 else []

            dead = await wait_for(three_dead, timeout=10)
            assert all(d["attempts"] == 2 and d["last_status_code"] == 500 for d in dead)
            assert "attempts exhausted" in dead[0]["last_error"]
            only_b = (await client.get("/dlq", params={"event_type": "b.y"})).json()
            assert [d["event"]["type"] for d in only_b["dead_letters"]] == ["b.y"]
            none = (await client.get("/dlq", params={"destination": "other"})).json()
            assert none["dead_letters"] == []
            future = (await client.get("/dlq", params={"since": "2999-01-01T00:00:00Z"})).json()
            assert future["dead_letters"] == []
            bad = await client.get("/dlq", params={"since": "yesterday"})
            assert bad.status_code == 422
            assert bad.headers["content-type"] == "application/problem+json"
            page = (await client.get("/dlq", params={"limit": 2})).json()
            assert len(page["dead_letters"]) == 2 and page["next_cursor"]

            # CLI against the same database.
            env = server.env
            out = subprocess.run(
                [INGESTD, "dlq", "list", "--json"], env=env, capture_output=True, text=True
            )
            assert out.returncode == 0, out.stderr
            assert len(out.stdout.strip().splitlines()) == 3
            shown = subprocess.run(
                [INGESTD, "dlq", "show", dead[0]["id"]], env=env, capture_output=True, text=True
            )
            assert shown.returncode == 0 and dead[0]["id"] in shown.stdout
            refused = subprocess.run([INGESTD, "dlq", "purge"], env=env, capture_output=True)
            assert refused.returncode == 2

            receiver.behave("/down", status=200)
            first_id = dead[0]["id"]
            r = await client.post("/dlq/replay", json={"ids": [first_id]})
            assert r.json() == {"replayed": 1}
            r = await client.post("/dlq/replay", json={"event_type": "b.y"})
            assert r.json() == {"replayed": 1}

            async def replayed() -> bool:
                ok = {x.headers["webhook-id"] for x in receiver.received("/down", status=200)}
                return ok == {first_id, dead[2]["id"]}

            await wait_for(replayed, timeout=10)
            # The replay carried the webhook-id of the failed attempts.
            failed_ids = {x.headers["webhook-id"] for x in receiver.received("/down", status=500)}
            assert first_id in failed_ids
            status = (await client.get(f"/ingest/{dead[0]['event']['id']}/status")).json()
            assert status["status"] == "completed"

            assert (await client.post("/dlq/replay", json={})).status_code == 422
            out = subprocess.run(
                [INGESTD, "dlq", "purge", dead[1]["id"]], env=env, capture_output=True, text=True
            )
            assert out.stdout.strip() == "purged 1"
            r = await client.delete(f"/dlq/{dead[1]['id']}")
            assert r.status_code == 404
            assert r.headers["content-type"] == "application/problem+json"
            assert (await client.get("/dlq")).json()["dead_letters"] == []
    finally:
        await server.stop()


async def test_replay_by_event_ids_and_unknown_ids_are_named(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.behave("/a", status=500)
    receiver.behave("/b", status=500)
    hooks = "".join(
        f'[[destinations]]\nname = "{n}"\nkind = "webhook"\nurl = "{receiver.url("/" + n)}"\n'
        "retry_schedule = [0]\n"
        for n in ("a", "b")
    )
    server = await start_ingestd(tmp_path, hooks)
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            for event_id in ("ev-1", "ev-2"):
                r = await client.post("/ingest", json={"source": "s", "id": event_id})
                assert r.status_code == 202

            async def four_dead() -> list[dict[str, Any]]:
                items: list[dict[str, Any]] = (await client.get("/dlq")).json()["dead_letters"]
                return items if len(items) == 4 else []

            dead = await wait_for(four_dead, timeout=10)
            receiver.behave("/a", status=200)
            receiver.behave("/b", status=200)

            # An event id given as `ids` (the reported bug): 404 naming it, and a hint.
            r = await client.post("/dlq/replay", json={"ids": ["ev-1"]})
            assert r.status_code == 404
            assert r.headers["content-type"] == "application/problem+json"
            problem = r.json()
            assert problem["unknown"] == ["ev-1"] and problem["field"] == "ids"
            assert "event_ids" in problem["detail"]
            # One real id and one unknown: nothing is replayed.
            known = dead[0]["id"]
            r = await client.post("/dlq/replay", json={"ids": [known, "msg_nope"]})
            assert r.status_code == 404 and r.json()["unknown"] == ["msg_nope"]
            assert len((await client.get("/dlq")).json()["dead_letters"]) == 4
            # Unknown event ids are named too.
            r = await client.post("/dlq/replay", json={"event_ids": ["ev-1", "ev-404"]})
            assert r.status_code == 404 and r.json()["unknown"] == ["ev-404"]
            bad = await client.post("/dlq/replay", json={"event_ids": "ev-1"})
            assert bad.status_code == 422 and bad.json()["field"] == "event_ids"
            both = await client.post("/dlq/replay", json={"event_ids": ["ev-1"], "ids": [known]})
            assert both.status_code == 422

            # event_ids: every dead delivery of those events (both destinations).
            r = await client.post("/dlq/replay", json={"event_ids": ["ev-1"]})
            assert r.status_code == 200 and r.json() == {"replayed": 2}
            left = (await client.get("/dlq")).json()["dead_letters"]
            assert {d["event"]["id"] for d in left} == {"ev-2"}

            async def delivered() -> bool:
                status = (await client.get("/ingest/ev-1/status")).json()
                return bool(status["status"] == "completed")

            await wait_for(delivered, timeout=10)
    finally:
        await server.stop()
