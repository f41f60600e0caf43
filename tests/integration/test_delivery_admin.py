"""The destinations admin API, with the API and the worker in separate processes: a
change made through one process takes effect in the other without a restart."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from receivers import Receiver, start_ingestd
from support import ServerProcess, free_port, wait_for

SECRET = "whsec_" + base64.b64encode(b"k" * 24).decode()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


async def test_create_patch_delete_take_effect_in_another_process(
    tmp_path: Path, receiver: Receiver
) -> None:
    api = await start_ingestd(
        tmp_path,
        f"""
[[destinations]]
name = "seeded"
kind = "webhook"
url = "{receiver.url("/seeded")}"
""",
        command="api",
    )
    worker = ServerProcess(tmp_path, port=free_port(), command="worker", env=api.env)
    await worker.start()
    try:
        async with httpx.AsyncClient(base_url=api.url) as client:
            listed = (await client.get("/destinations")).json()["destinations"]
            assert [d["name"] for d in listed] == ["seeded"]
            assert listed[0]["breaker"]["state"] == "closed"

            body = {
                "name": "a8",
                "kind": "webhook",
                "url": receiver.url("/a8"),
                "secrets": [SECRET],
                "event_types": ["page.*"],
                "retry_schedule": [0, 5, 300, 1800],
                "max_in_flight": 8,
            }
            r = await client.post("/destinations", json=body)
            assert r.status_code == 201, r.text
            assert r.headers["location"] == "/destinations/a8"
            created = r.json()
            assert created["secrets"] == "***"
            assert created["event_types"] == ["page.*"]
            assert created["enabled"] is True
            assert (await client.post("/destinations", json=body)).status_code == 409

            for bad, word in (
                ({"name": "x", "kind": "nope"}, "unknown destination kind"),
                ({"name": "x", "kind": "webhook", "url": "http://10.0.0.1/"}, "SSRF"),
                ({"name": "bad name!", "kind": "webhook", "url": "http://a"}, "name"),
                ({"name": "x", "kind": "webhook"}, "url"),
            ):
                r = await client.post("/destinations", json=bad)
                assert r.status_code == 422, bad
                assert r.headers["content-type"] == "application/problem+json"
                assert word in r.json()["detail"]

            r = await client.post("/ingest", json={"source": "s", "type": "page.viewed"})
            assert r.status_code == 202
            await wait_for(lambda: _has(receiver, "/a8", 1), timeout=10)

            r = await client.patch("/destinations/a8", json={"event_types": ["order.*"]})
            assert r.status_code == 200 and r.json()["event_types"] == ["order.*"]
            await client.post("/ingest", json={"source": "s", "type": "order.paid"})
            await wait_for(lambda: _has(receiver, "/a8", 2), timeout=10)
            assert receiver.received("/a8")[1].body.find(b"order.paid") >= 0

            r = await client.patch("/destinations/a8", json={"enabled": False})
            assert r.json()["enabled"] is False
            assert r.json()["disabled_reason"]
            r = await client.patch("/destinations/a8", json={"name": "other"})
            assert r.status_code == 422

            assert (await client.delete("/destinations/a8")).status_code == 204
            missing = await client.get("/destinations/a8")
            assert missing.status_code == 404
            assert missing.headers["content-type"] == "application/problem+json"
            assert (await client.delete("/destinations/a8")).status_code == 404
            assert (await client.patch("/destinations/a8", json={})).status_code == 404
    finally:
        await worker.stop()
        await api.stop()


async def _has(receiver: Receiver, path: str, n: int) -> bool:
    return len(receiver.received(path)) >= n
