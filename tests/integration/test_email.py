"""Email destinations against real loopback servers: a SendGrid v3 Mail Send contract
server (aiohttp) and an aiosmtpd SMTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from receivers import start_ingestd
from support import free_port, wait_for

RETRIES = "retry_schedule = [0" + ", 0.3" * 30 + "]"


class SendGrid:
    """POST /v3/mail/send as documented: bearer key, JSON body, 202 on success, 401 on a
    bad key, 400 on a malformed body; this one also answers 429 once to busy@ addresses."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.requests = 0
        self.throttled: set[str] = set()
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> SendGrid:
        app = web.Application()
        app.router.add_post("/v3/mail/send", self.send)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def send(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.headers.get("authorization") != "Bearer SG.good":
            return web.json_response(
                {"errors": [{"message": "The provided authorization grant is invalid"}]},
                status=401,
            )
        body = await request.json()
        if not body.get("personalizations") or not body.get("from") or "subject" not in body:
            return web.json_response({"errors": [{"message": "bad request"}]}, status=400)
        to = body["personalizations"][0]["to"][0]["email"]
        if to.startswith("busy@") and to not in self.throttled:
            self.throttled.add(to)
            return web.json_response(
                {"errors": [{"message": "too many requests"}]},
                status=429,
                headers={"Retry-After": "1"},
            )
        self.sent.append(body)
        return web.Response(status=202)


class Mailbox:
    """aiosmtpd handler: 550 for reject@, 451 once for later@, else accept."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []
        self.deferred: set[str] = set()

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.startswith("reject@"):
            return "550 5.1.1 no such user"
        if address.startswith("later@") and address not in self.deferred:
            self.deferred.add(address)
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


@pytest.fixture
async def sendgrid() -> AsyncIterator[SendGrid]:
    server = await SendGrid().start()
    yield server
    assert server.runner is not None
    await server.runner.cleanup()


def sendgrid_destination(name: str, key: str, types: str, base: str, subject: str) -> str:
    return f"""
[[destinations]]
name = "{name}"
kind = "sendgrid"
api_key = "{key}"
base_url = "{base}"
from = "ops@example.com"
to = "{{{{ data.email }}}}"
subject = "{subject}"
text = "Hi {{{{ data.name }}}}"
event_types = ["{types}"]
{RETRIES}
"""


async def test_sendgrid_contract(tmp_path: Path, sendgrid: SendGrid) -> None:
    base = f"http://127.0.0.1:{sendgrid.port}"
    toml = sendgrid_destination("mail", "SG.good", "user.*", base, "Welcome {{ data.name }}")
    toml += sendgrid_destination("badkey", "SG.bad", "bad.*", base, "x")
    toml += sendgrid_destination("inject", "SG.good", "inject.*", base, "{{ data.subject }}")
    server = await start_ingestd(tmp_path, toml)
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:

            async def send(type_: str, **data: str) -> str:
                r = await client.post("/ingest", json={"source": "s", "type": type_, "data": data})
                assert r.status_code == 202
                event_id: str = r.json()["id"]
                return event_id

            async def final(event_id: str) -> dict[str, Any]:
                async def done() -> dict[str, Any] | None:
                    body: dict[str, Any] = (await client.get(f"/ingest/{event_id}/status")).json()
                    return body if body["status"] in ("completed", "dead") else None

                result: dict[str, Any] = await wait_for(done, timeout=10)
                return result

            ok = await send("user.signup", email="ada@example.com", name="Ada")
            busy = await send("user.signup", email="busy@example.com", name="Bee")
            bad = await send("bad.key", email="x@example.com", name="X")
            injected = await send(
                "inject.me", email="y@example.com", name="Y", subject="Hi\r\nBcc: all@evil"
            )
            assert (await final(ok))["status"] == "completed"
            sent = {m["personalizations"][0]["to"][0]["email"]: m for m in sendgrid.sent}
            assert sent["ada@example.com"]["subject"] == "Welcome Ada"
            assert sent["ada@example.com"]["content"][0]["value"] == "Hi Ada"
            assert sent["ada@example.com"]["from"] == {"email": "ops@example.com"}

            busy_status = await final(busy)
            assert busy_status["status"] == "completed"
            assert busy_status["destinations"][0]["attempts"] == 2

            bad_status = await final(bad)
            assert bad_status["status"] == "dead"
            (d,) = bad_status["destinations"]
            assert d["attempts"] == 1 and d["last_status_code"] == 401
            assert "authorization grant is invalid" in d["last_error"]

            injected_status = await final(injected)
            assert injected_status["status"] == "dead"
            assert "CR/LF" in injected_status["destinations"][0]["last_error"]
            assert "y@example.com" not in sent  # never sent
    finally:
        await server.stop()


async def test_smtp_4xx_retries_5xx_is_dead_and_a_down_server_is_waited_for(
    tmp_path: Path,
) -> None:
    up_port, down_port = free_port(), free_port()
    mailbox, late_box = Mailbox(), Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=up_port)
    controller.start()
    late: Controller | None = None
    toml = ""
    for name, port, types in (("smtp", up_port, "mail.*"), ("smtp-down", down_port, "late.*")):
        toml += f"""
[[destinations]]
name = "{name}"
kind = "smtp"
host = "127.0.0.1"
port = {port}
tls = "none"
from = "ops@example.com"
to = "{{{{ data.email }}}}"
subject = "Order {{{{ data.order }}}}"
text = "Thanks"
event_types = ["{types}"]
{RETRIES}
"""
    server = await start_ingestd(tmp_path, toml, INGESTD_BREAKER_CONSECUTIVE_FAILURES="1000")
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            ids = {}
            for email, type_ in (
                ("ok@example.com", "mail.sent"),
                ("later@example.com", "mail.sent"),
                ("reject@example.com", "mail.sent"),
                ("queued@example.com", "late.sent"),
            ):
                r = await client.post(
                    "/ingest",
                    json={"source": "s", "type": type_, "data": {"email": email, "order": 7}},
                )
                ids[email] = r.json()["id"]

            async def status(email: str) -> dict[str, Any]:
                body: dict[str, Any] = (await client.get(f"/ingest/{ids[email]}/status")).json()
                return body

            async def settled(email: str, want: str) -> dict[str, Any] | None:
                body = await status(email)
                return body if body["status"] == want else None

            await wait_for(lambda: settled("ok@example.com", "completed"), 10)
            later = await wait_for(lambda: settled("later@example.com", "completed"), 10)
            assert later["destinations"][0]["attempts"] == 2
            rejected = await wait_for(lambda: settled("reject@example.com", "dead"), 10)
            (d,) = rejected["destinations"]
            assert d["attempts"] == 1 and d["last_status_code"] == 550
            assert "no such user" in d["last_error"]
            delivered = {to for tos, _ in mailbox.messages for to in tos}
            assert delivered == {"ok@example.com", "later@example.com"}
            message = next(c for tos, c in mailbox.messages if tos == ["ok@example.com"])
            assert b"Subject: Order 7" in message
            assert b"Message-ID: <msg_" in message

            async def failed_once() -> bool:
                d = (await status("queued@example.com"))["destinations"][0]
                return d["state"] == "failed" and d["attempts"] >= 2

            await wait_for(failed_once, 10)
            late = Controller(late_box, hostname="127.0.0.1", port=down_port)
            late.start()
            await wait_for(lambda: settled("queued@example.com", "completed"), 10)
            assert [tos for tos, _ in late_box.messages] == [["queued@example.com"]]
    finally:
        await server.stop()
        controller.stop()
        if late is not None:
            late.stop()


async def test_sendgrid_to_an_internal_address_is_dead_at_once(
    tmp_path: Path, sendgrid: SendGrid
) -> None:
    # `localhost` resolves to loopback, which the SSRF guard refuses when no net is allowed:
    # refused before any socket is made, and permanent (a retry would be refused again).
    toml = sendgrid_destination(
        "mail", "SG.good", "user.*", f"http://localhost:{sendgrid.port}", "x"
    )
    server = await start_ingestd(tmp_path, toml, INGESTD_WEBHOOK_ALLOW_NETS="[]")
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            r = await client.post(
                "/ingest",
                json={"source": "s", "type": "user.x", "data": {"email": "a@b.c", "name": "A"}},
            )
            assert r.status_code == 202

            async def dead() -> dict[str, Any] | None:
                body: dict[str, Any] = (await client.get(f"/ingest/{r.json()['id']}/status")).json()
                return body if body["status"] == "dead" else None

            (d,) = (await wait_for(dead, timeout=10))["destinations"]
            assert d["attempts"] == 1
            assert "refused" in d["last_error"] and "loopback" in d["last_error"]
            assert sendgrid.sent == []
    finally:
        await server.stop()
