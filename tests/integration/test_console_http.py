"""The console over HTTP against a real `ingestd serve`: sign-in, session cookie, tenant
scoping, the switch. The browser suite (tests/browser) drives the same pages in Chromium."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import ServerProcess, running_server

ADMIN = "console-admin-key-0123456789"
ACME = "console-acme-key-0123456789"
INGEST = "console-ingest-key-0123456789"
KEYS = [
    {"id": "ops", "key": ADMIN, "scopes": ["ingest", "admin"]},
    {"id": "acme-admin", "key": ACME, "tenant": "acme", "scopes": ["ingest", "admin"]},
    {"id": "app", "key": INGEST, "scopes": ["ingest"]},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"INGESTD_API_KEYS": json.dumps(KEYS)}
    with running_server(tmp_path_factory.mktemp("console-http"), env) as proc:
        yield proc


def signed_in(server: ServerProcess, key: str) -> httpx.Client:
    client = httpx.Client(base_url=server.url, follow_redirects=False)
    answer = client.post("/console/sign-in", data={"key": key, "next": "/console/events"})
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/console/events"
    cookie = answer.headers["set-cookie"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age=1800"):
        assert attribute in cookie
    assert "Secure" not in cookie  # plain HTTP here
    return client


def ingest(server: ServerProcess, key: str, event: dict[str, object]) -> None:
    answer = httpx.post(
        f"{server.url}/ingest", json=event, headers={"authorization": f"Bearer {key}"}
    )
    assert answer.status_code == 202, answer.text


def test_pages_need_a_session(server: ServerProcess) -> None:
    answer = httpx.get(f"{server.url}/console/events")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/console/sign-in")
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    page = httpx.get(f"{server.url}/console/sign-in")
    assert page.status_code == 200 and 'name="key"' in page.text


def test_bad_and_ingest_only_keys_cannot_sign_in(server: ServerProcess) -> None:
    for key, says in (("nope-0123456789abcdef", "not valid"), (INGEST, "may only ingest")):
        answer = httpx.post(f"{server.url}/console/sign-in", data={"key": key})
        assert answer.status_code == 401
        assert says in answer.text
        assert "set-cookie" not in answer.headers


def test_a_cross_origin_sign_in_is_refused(server: ServerProcess) -> None:
    answer = httpx.post(
        f"{server.url}/console/sign-in",
        data={"key": ADMIN},
        headers={"origin": "https://evil.example"},
    )
    assert answer.status_code == 403
    assert answer.headers["content-type"] == "application/problem+json"
    assert "set-cookie" not in answer.headers


def test_events_and_event_page_are_scoped_by_tenant(server: ServerProcess) -> None:
    ingest(server, ADMIN, {"source": "shop", "type": "order.paid", "id": "d-1", "data": {"n": 1}})
    ingest(server, ACME, {"source": "shop", "type": "order.paid", "id": "a-1", "data": {"n": 2}})
    ops = signed_in(server, ADMIN)
    acme = signed_in(server, ACME)
    listing = ops.get("/console/events", params={"type": "order.paid"}).text
    assert "d-1" in listing and "a-1" not in listing
    listing = acme.get("/console/events").text
    assert "a-1" in listing and "d-1" not in listing
    page = ops.get("/console/events/d-1")
    assert page.status_code == 200
    assert re.search(r"data-idempotency-key>shop:d-1<", page.text)
    assert "&#34;n&#34;: 1" in page.text  # the payload, escaped
    assert acme.get("/console/events/d-1").status_code == 404
    # The operator's parts (process rates, breakers) are not the tenant's.
    assert "Accepted / s" in ops.get("/console").text
    overview = acme.get("/console")
    assert overview.status_code == 200 and "Accepted / s" not in overview.text


def test_the_event_page_shows_the_trace_id_and_a_header_key(server: ServerProcess) -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    answer = httpx.post(
        f"{server.url}/ingest",
        json={"source": "shop", "type": "order.paid", "data": {}},
        headers={
            "authorization": f"Bearer {ADMIN}",
            "traceparent": trace,
            "idempotency-key": "checkout-4711",
        },
    )
    assert answer.status_code == 202
    page = signed_in(server, ADMIN).get(f"/console/events/{answer.json()['id']}").text
    assert "data-trace-id>4bf92f3577b34da6a3ce929d0e0e4736<" in page
    assert "data-idempotency-key>checkout-4711<" in page


def test_a_search_by_id_goes_to_the_event(server: ServerProcess) -> None:
    ops = signed_in(server, ADMIN)
    answer = ops.get("/console/events", params={"id": "d-1"})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/events/d-1"
    bad = ops.get("/console/events", params={"since": "yesterday"})
    assert bad.status_code == 422 and "RFC 3339" in bad.text


def test_sign_out_ends_the_session_in_the_browser(server: ServerProcess) -> None:
    ops = signed_in(server, ADMIN)
    answer = ops.post("/console/sign-out")
    assert answer.status_code == 303
    assert "Max-Age=0" in answer.headers["set-cookie"]


def test_the_console_can_be_turned_off(tmp_path: Path) -> None:
    with running_server(tmp_path, {"INGESTD_CONSOLE": "false"}) as proc:
        assert httpx.get(f"{proc.url}/console").status_code == 404
        assert httpx.get(f"{proc.url}/health").status_code == 200


def test_without_keys_loopback_is_the_operator(tmp_path: Path) -> None:
    with running_server(tmp_path) as proc:
        page = httpx.get(f"{proc.url}/console")
        assert page.status_code == 200
        assert "tenant default" in page.text and "Sign out" not in page.text
        assert "ingestd_console=" in page.headers["set-cookie"]  # carries the CSRF nonce


async def test_without_keys_a_remote_client_is_refused(tmp_path: Path) -> None:
    """The console follows the API's rule: no key, loopback only (unless the operator
    allows unauthenticated access, which the API then also serves)."""
    from ingestd.api.app import IngestdApp
    from ingestd.config import load_settings

    for allowed, expected in ((False, 403), (True, 200)):
        settings = load_settings(
            database_url=f"sqlite:///{tmp_path}/{allowed}.db", allow_unauthenticated=allowed
        )
        app = IngestdApp(settings, "api")
        await app.runtime.start()
        try:
            transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4000))
            async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
                answer = await client.get("/console")
                assert answer.status_code == expected, answer.text
                if expected == 403:
                    assert "loopback" in answer.json()["detail"]
        finally:
            await app.runtime.stop()
