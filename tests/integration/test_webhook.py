"""Webhooks end to end: a real ingestd process, a real loopback receiver."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from receivers import Receiver, start_ingestd
from support import wait_for

SECRET_A = "whsec_" + base64.b64encode(b"a" * 24).decode()
SECRET_B = "whsec_" + base64.b64encode(b"b" * 32).decode()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


async def test_signed_delivery_verifies_with_both_rotating_secrets(
    tmp_path: Path, receiver: Receiver
) -> None:
    server = await start_ingestd(
        tmp_path,
        f"""
[[destinations]]
name = "hooks"
kind = "webhook"
url = "{receiver.url()}"
secrets = ["{SECRET_A}", "{SECRET_B}"]
event_types = ["page.*"]
""",
    )
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            r = await client.post(
                "/ingest", json={"source": "web", "type": "page.viewed", "data": {"n": 1}}
            )
            assert r.status_code == 202
            event_id = r.json()["id"]
            skipped = await client.post("/ingest", json={"source": "web", "type": "user.x"})
            assert skipped.status_code == 202
            await wait_for(lambda: _count(receiver, 1))
            got = receiver.received()[0]
            for secret in (SECRET_A, SECRET_B):
                verified = Webhook(secret).verify(got.body, got.headers)
                assert verified["id"] == event_id
                assert verified["data"] == {"n": 1}
            assert len(got.headers["webhook-signature"].split(" ")) == 2

            async def done() -> bool:
                status = (await client.get(f"/ingest/{event_id}/status")).json()
                return status["status"] == "completed"

            await wait_for(done)
            status = (await client.get(f"/ingest/{event_id}/status")).json()
            (d,) = status["destinations"]
            assert d["destination"] == "hooks"
            assert d["delivery_id"] == got.headers["webhook-id"]
            assert d["last_status_code"] == 200
            assert len(receiver.received()) == 1  # user.x is not subscribed
    finally:
        await server.stop()


async def _count(receiver: Receiver, n: int) -> bool:
    return len(receiver.received()) >= n


def _json(body: bytes) -> dict[str, object]:
    result: dict[str, object] = json.loads(body)
    return result
