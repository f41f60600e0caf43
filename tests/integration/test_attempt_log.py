"""The attempt log through real processes: a failing then recovering webhook receiver, its
answers (status, headers, body's start) on GET /ingest/{id}/status and GET /deliveries/{id},
with the destination's secrets cut out everywhere, and nothing logged with them."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from receivers import start_ingestd
from support import free_port, wait_for

SECRET = "whsec_" + base64.b64encode(b"attempt-log-signing-secret!").decode()
TOKEN = "query-token-0123456789"
PASSWORD = "basic-password-987"


class Echo:
    """Answers 503 twice (echoing back what a careless receiver might: the secrets), then 200."""

    def __init__(self) -> None:
        self.calls = 0
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        await request.read()
        if self.calls <= 2:
            echoed = f"busy; you sent {request.headers.get('authorization')} {TOKEN} {SECRET}"
            return web.Response(
                status=503,
                text=echoed + " " + "x" * 500,
                headers={
                    "Retry-After": "0",
                    "Set-Cookie": "session=abcdef; HttpOnly",
                    "X-Request-Id": "req-1",
                },
            )
        return web.Response(status=202, body=b"\xff\xfe not utf-8")

    async def __aenter__(self) -> Echo:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    async with Echo() as receiver:
        yield receiver


async def test_every_attempt_is_shown_without_secrets(tmp_path: Path, echo: Echo) -> None:
    url = f"http://user:{PASSWORD}@127.0.0.1:{echo.port}/hook?token={TOKEN}"
    toml = f"""
[[destinations]]
name = "crm"
kind = "webhook"
url = "{url}"
secrets = ["{SECRET}"]
retry_schedule = [0, 0.1, 0.1, 0.1]
"""
    server = await start_ingestd(tmp_path, toml, INGESTD_ATTEMPT_BODY_BYTES="64")
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            sent = await client.post("/ingest", json={"source": "s", "id": "e-1"})
            assert sent.status_code == 202

            async def delivered() -> dict[str, Any] | None:
                body: dict[str, Any] = (await client.get("/ingest/e-1/status")).json()
                return body if body["status"] == "completed" else None

            status = await wait_for(delivered, 20)
            (crm,) = status["destinations"]
            log = crm["attempt_log"]
            assert [(a["attempt"], a["verdict"], a["status_code"]) for a in log] == [
                (1, "retry", 503),
                (2, "retry", 503),
                (3, "succeeded", 202),
            ]
            first = log[0]
            assert first["error_class"] == "http" and first["error"].startswith("HTTP 503: busy")
            assert first["duration_ms"] >= 0 and first["started_at"].endswith("Z")
            headers = first["response"]["headers"]
            assert headers["set-cookie"] == "***" and headers["x-request-id"] == "req-1"
            assert len(first["response"]["body"].encode()) <= 64  # INGESTD_ATTEMPT_BODY_BYTES
            assert first["response"]["body"].startswith("busy; you sent Basic ")
            last = log[2]
            assert last["error_class"] is None and last["response"]["body"] is None
            assert base64.b64decode(last["response"]["body_base64"]) == b"\xff\xfe not utf-8"

            one = await client.get(f"/deliveries/{crm['delivery_id']}")
            assert one.status_code == 200
            view = one.json()
            assert view["event"]["id"] == "e-1" and view["attempt_log"] == log
            missing = await client.get("/deliveries/msg_nope")
            assert missing.status_code == 404
            assert missing.headers["content-type"] == "application/problem+json"

            shown = json.dumps(status) + one.text
            for secret in (SECRET, SECRET.removeprefix("whsec_"), TOKEN, PASSWORD):
                assert secret not in shown
            basic = base64.b64encode(f"user:{PASSWORD}".encode()).decode()
            assert basic not in shown  # the echoed Authorization header's credentials
    finally:
        await server.stop()
    logs = server.logs()
    for secret in (SECRET, TOKEN, PASSWORD):
        assert secret not in logs
