"""API keys (401/403, tenants, pinned sources) and rate limits (429) against real servers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingestd_client import Client, EventRejected
from support import ServerProcess, all_events, free_port, run_cli

INGEST_KEY = "k-ingest-0123456789abcdef"
ADMIN_KEY = "k-admin-0123456789abcdef"
PINNED_KEY = "k-pinned-0123456789abcdef"
A_KEY = "k-tenant-a-0123456789abcdef"
B_KEY = "k-tenant-b-0123456789abcdef"
READ_KEY = "k-read-0123456789abcdef"
A_READ_KEY = "k-read-a-0123456789abcdef"

KEYS = [
    {"id": "ingest-only", "key": INGEST_KEY},
    {"id": "ops", "key_sha256": hashlib.sha256(ADMIN_KEY.encode()).hexdigest(),
     "scopes": ["ingest", "admin"]},
    {"id": "shop", "key": PINNED_KEY, "source": "shop", "scopes": ["ingest"]},
    {"id": "a", "key": A_KEY, "tenant": "acme", "scopes": ["ingest", "admin"]},
    {"id": "b", "key": B_KEY, "tenant": "globex", "scopes": ["ingest", "admin"]},
    {"id": "viewer", "key": READ_KEY, "scopes": ["read"]},
    {"id": "a-viewer", "key": A_READ_KEY, "tenant": "acme", "scopes": ["read"]},
]  # fmt: skip


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


Start = Callable[..., Any]


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Start]:
    """Start real `ingestd` processes with extra env; each in its own directory."""
    running: list[ServerProcess] = []

    async def run(command: str = "serve", **env: str) -> ServerProcess:
        tmp = tmp_path / f"s{len(running)}"
        tmp.mkdir()
        proc = ServerProcess(tmp, port=free_port(), command=command, env=env)
        running.append(proc)
        await proc.start()
        return proc

    yield run
    for proc in running:
        await proc.stop()


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"].endswith("/" + slug) and body["status"] == status and body["detail"]
    return body


async def test_a_request_without_a_valid_key_gets_401(start: Start) -> None:
    server = await start(INGESTD_API_KEYS=json.dumps(KEYS))
    event = {"source": "s", "type": "t", "id": "e-1"}
    async with httpx.AsyncClient(base_url=server.url) as http:
        missing = await http.post("/ingest", json=event)
        assert_problem(missing, 401, "unauthorized")
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert "Authorization: Bearer" in missing.json()["detail"]
        wrong = await http.post("/ingest", json=event, headers=bearer("k-wrong-0123456789abcdef"))
        assert_problem(wrong, 401, "unauthorized")
        assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
        basic = await http.post("/ingest", json=event, headers={"Authorization": "Basic eDp5"})
        assert_problem(basic, 401, "unauthorized")
        assert_problem(await http.get("/events"), 401, "unauthorized")
        assert_problem(await http.get("/dlq"), 401, "unauthorized")
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/metrics")).status_code == 200
        # Nothing was stored by the refused requests; the alias header works.
        assert_problem(await http.get("/ingest/e-1/status", headers=bearer(ADMIN_KEY)), 404,
                       "event-not-found")  # fmt: skip
        ok = await http.post("/ingest", json=event, headers={"X-API-Key": INGEST_KEY})
        assert ok.status_code == 202, ok.text


async def test_scopes_and_a_pinned_source(start: Start) -> None:
    server = await start(INGESTD_API_KEYS=json.dumps(KEYS))
    async with httpx.AsyncClient(base_url=server.url) as http:
        # The ingest scope reads the status_url its 202 names, and nothing else.
        sent = await http.post("/ingest", json={"source": "s", "id": "st-1"},
                               headers=bearer(INGEST_KEY))  # fmt: skip
        assert sent.status_code == 202, sent.text
        status = await http.get(sent.json()["status_url"], headers=bearer(INGEST_KEY))
        assert status.status_code == 200, status.text
        assert status.json()["id"] == "st-1"
        assert_problem(await http.get("/ingest/none/status", headers=bearer(INGEST_KEY)), 404,
                       "event-not-found")  # fmt: skip
        assert_problem(await http.post("/ingest/st-1/status", headers=bearer(INGEST_KEY)), 403,
                       "forbidden")  # fmt: skip
        refused = await http.get("/events", headers=bearer(INGEST_KEY))
        assert_problem(refused, 403, "forbidden")
        assert 'scope="read"' in refused.headers["www-authenticate"]  # the least it needs
        assert_problem(await http.get("/destinations", headers=bearer(INGEST_KEY)), 403,
                       "forbidden")  # fmt: skip
        # A tenant's admin does not manage the shared destinations.
        assert_problem(await http.get("/destinations", headers=bearer(A_KEY)), 403, "forbidden")
        assert (await http.get("/destinations", headers=bearer(ADMIN_KEY))).status_code == 200

        # The pinned key: source comes from the key; another source is refused.
        pinned = bearer(PINNED_KEY)
        ok = await http.post("/ingest", json={"type": "order.paid", "id": "p-1"}, headers=pinned)
        assert ok.status_code == 202, ok.text
        assert ok.json()["idempotency_key"] == "shop:p-1"
        other = await http.post("/ingest", json={"source": "bank", "id": "p-2"}, headers=pinned)
        body = assert_problem(other, 403, "source-not-allowed")
        assert "'shop'" in body["detail"] and "'bank'" in body["detail"]
        batch = await http.post(
            "/ingest/batch",
            json={"events": [{"id": "p-3"}, {"source": "bank", "id": "p-4"}]},
            headers=pinned,
        )
        assert batch.status_code == 207, batch.text
        results = batch.json()["results"]
        assert results[0]["status"] == "accepted"
        assert results[1]["status"] == "rejected" and results[1]["error"]["status"] == 403

        events = await all_events(httpx.AsyncClient(base_url=server.url, headers=bearer(ADMIN_KEY)))
        assert sorted((e["id"], e["source"]) for e in events) == [
            ("p-1", "shop"),
            ("p-3", "shop"),
            ("st-1", "s"),
        ]


async def test_the_read_scope_looks_and_never_acts(start: Start, tmp_path: Path) -> None:
    config = tmp_path / "inbox.toml"
    config.write_text('[[destinations]]\nname = "pull"\nkind = "inbox"\n')
    server = await start(INGESTD_API_KEYS=json.dumps(KEYS), INGESTD_CONFIG=str(config))
    read, admin = bearer(READ_KEY), bearer(ADMIN_KEY)
    async with httpx.AsyncClient(base_url=server.url) as http:
        sent = await http.post("/ingest", json={"source": "s", "id": "r-1"}, headers=admin)
        assert sent.status_code == 202, sent.text
        # Looking: status, events, dead letters, destinations, an inbox's waiting events.
        assert (await http.get("/ingest/r-1/status", headers=read)).json()["id"] == "r-1"
        events = (await http.get("/events", headers=read)).json()["events"]
        assert [e["id"] for e in events] == ["r-1"]
        assert (await http.get("/dlq", headers=read)).json()["dead_letters"] == []
        assert_problem(await http.get("/dlq/msg_none", headers=read), 404, "dead-letter-not-found")
        listed = (await http.get("/destinations", headers=read)).json()["destinations"]
        assert [d["name"] for d in listed] == ["pull"]
        assert (await http.get("/destinations/pull", headers=read)).status_code == 200
        peek = await http.get("/inbox/pull/waiting", headers=read)
        assert [e["event"]["id"] for e in peek.json()["events"]] == ["r-1"]
        # Acting: each refused with the admin (or ingest) scope named, nothing changed.
        for method, path, body in (
            ("POST", "/dlq/replay", {"all": True}),
            ("DELETE", "/dlq/msg_none", None),
            ("PATCH", "/destinations/pull", {"enabled": False}),
            ("POST", "/destinations", {"name": "x", "kind": "inbox"}),
            ("GET", "/inbox/pull", None),  # leasing changes the delivery
            ("POST", "/inbox/pull/ack", {"ids": []}),
        ):
            refused = await http.request(method, path, json=body, headers=read)
            assert_problem(refused, 403, "forbidden")
            assert 'scope="admin"' in refused.headers["www-authenticate"], (method, path)
        ingest = await http.post("/ingest", json={"source": "s"}, headers=read)
        assert_problem(ingest, 403, "forbidden")
        assert 'scope="ingest"' in ingest.headers["www-authenticate"]
        assert (await http.get("/destinations/pull", headers=admin)).json()["enabled"] is True
        again = await http.get("/inbox/pull/waiting", headers=read)
        assert again.json()["events"][0]["state"] == "pending"  # the peek leased nothing
        # A tenant's read key sees its own tenant only, and not the shared destinations.
        a_read = bearer(A_READ_KEY)
        assert (await http.get("/events", headers=a_read)).json()["events"] == []
        assert_problem(await http.get("/ingest/r-1/status", headers=a_read), 404,
                       "event-not-found")  # fmt: skip
        assert_problem(await http.get("/destinations", headers=a_read), 403, "forbidden")


async def test_tenants_do_not_see_or_dedup_against_each_other(start: Start) -> None:
    server = await start(INGESTD_API_KEYS=json.dumps(KEYS))
    event = {"source": "shop", "type": "order.paid", "id": "o-1", "data": {"n": 1}}
    async with (
        httpx.AsyncClient(base_url=server.url, headers=bearer(A_KEY)) as a,
        httpx.AsyncClient(base_url=server.url, headers=bearer(B_KEY)) as b,
    ):
        assert (await a.post("/ingest", json=event)).status_code == 202
        # The same id and key under another tenant is a new event, even with other data.
        assert (await b.post("/ingest", json={**event, "data": {"n": 2}})).status_code == 202
        assert (await a.post("/ingest", json=event)).status_code == 200  # A's own duplicate
        only_a = await a.post("/ingest", json={**event, "id": "a-only"})
        assert only_a.status_code == 202

        assert (await b.get("/ingest/o-1/status")).status_code == 200
        assert_problem(await b.get("/ingest/a-only/status"), 404, "event-not-found")
        # An ingest-only key of the default tenant does not read tenant A's event either.
        assert_problem(await b.get("/ingest/a-only/status", headers=bearer(INGEST_KEY)), 404,
                       "event-not-found")  # fmt: skip
        assert (await a.get("/ingest/a-only/status")).status_code == 200
        assert [(e["id"], e["data"]) for e in await all_events(b)] == [("o-1", {"n": 2})]
        assert sorted((e["id"], e["data"]["n"]) for e in await all_events(a)) == [
            ("a-only", 1),
            ("o-1", 1),
        ]


async def test_over_the_rate_429_with_retry_after_and_nothing_stored(start: Start) -> None:
    server = await start(INGESTD_RATE_LIMIT="0.2", INGESTD_RATE_LIMIT_BURST="5")
    async with httpx.AsyncClient(base_url=server.url) as http:
        batch = {"events": [{"source": "rl", "id": f"r-{i}"} for i in range(5)]}
        first = await http.post("/ingest/batch", json=batch)
        assert first.status_code == 207 and first.json()["accepted"] == 5
        assert first.headers["ratelimit-limit"] == "5"
        assert first.headers["ratelimit-remaining"] == "0"

        over = await http.post("/ingest", json={"source": "rl", "id": "r-over"})
        body = assert_problem(over, 429, "rate-limited")
        assert int(over.headers["retry-after"]) >= 1
        assert over.headers["ratelimit-remaining"] == "0"
        assert "nothing was stored" in body["detail"]
        too_big = await http.post(
            "/ingest/batch", json={"events": [{"source": "rl"} for _ in range(6)]}
        )
        assert_problem(too_big, 413, "batch-exceeds-rate-burst")

        assert_problem(await http.get("/ingest/r-over/status"), 404, "event-not-found")
        assert len(await all_events(http)) == 5
        metrics = (await http.get("/metrics")).text
        assert "ingestd_rate_limited_events_total 1.0" in metrics


async def test_redis_shares_one_limit_between_api_processes(start: Start, redis_url: str) -> None:
    env = {
        "INGESTD_API_KEYS": json.dumps(KEYS),
        "INGESTD_RATE_LIMIT": "0.05",
        "INGESTD_RATE_LIMIT_BURST": "4",
        "INGESTD_RATE_LIMIT_URL": redis_url,
        "INGESTD_RATE_LIMIT_PREFIX": f"ingestd-test:{uuid.uuid4().hex}:",
    }
    one = await start("api", **env)
    two = await start("api", **env)
    answers = []
    async with httpx.AsyncClient(headers=bearer(INGEST_KEY)) as http:
        for i, server in enumerate([one, two, one, two, one, two]):
            response = await http.post(f"{server.url}/ingest", json={"source": "s", "id": f"{i}"})
            answers.append(response.status_code)
        # Another key has its own bucket.
        other = await http.post(
            f"{two.url}/ingest", json={"source": "s", "id": "x"}, headers=bearer(ADMIN_KEY)
        )
    assert answers == [202, 202, 202, 202, 429, 429]
    assert other.status_code == 202


async def test_an_unreachable_redis_fails_open_and_is_counted(start: Start) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    server = await start(
        INGESTD_RATE_LIMIT="0.01", INGESTD_RATE_LIMIT_BURST="1", INGESTD_RATE_LIMIT_URL=closed
    )
    async with httpx.AsyncClient(base_url=server.url) as http:
        answers = [
            (await http.post("/ingest", json={"source": "s", "id": f"{i}"})).status_code
            for i in range(3)
        ]
        metrics = (await http.get("/metrics")).text
    assert answers == [202, 202, 202]
    assert 'ingestd_rate_limit_backend_errors_total{outcome="open"} 3.0' in metrics
    assert "rate limiter unavailable, failing open" in server.logs()


async def test_an_unreachable_redis_can_fail_closed(start: Start) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    server = await start(
        INGESTD_RATE_LIMIT="10", INGESTD_RATE_LIMIT_URL=closed, INGESTD_RATE_LIMIT_FAIL="closed"
    )
    async with httpx.AsyncClient(base_url=server.url) as http:
        refused = await http.post("/ingest", json={"source": "s", "id": "c-1"})
        assert_problem(refused, 503, "rate-limiter-unavailable")
        assert refused.headers["retry-after"] == "1"
        assert_problem(await http.get("/ingest/c-1/status"), 404, "event-not-found")


async def test_the_python_sdk_sends_its_api_key(start: Start) -> None:
    server = await start(INGESTD_API_KEYS=json.dumps(KEYS))
    client = Client(server.url, api_key=PINNED_KEY)
    try:
        result = await asyncio.to_thread(client.send, {"type": "t", "id": "sdk-1"}, 10)
    finally:
        client.close()
    assert result.status == "accepted" and result.idempotency_key == "shop:sdk-1"
    anonymous = Client(server.url)
    try:
        with pytest.raises(EventRejected) as refused:
            await asyncio.to_thread(anonymous.send, {"source": "s", "id": "sdk-2"}, 10)
    finally:
        anonymous.close()
    assert refused.value.status == 401


async def test_the_cli_sends_with_a_key_and_reads_a_tenants_status(start: Start) -> None:
    server = await start(INGESTD_API_KEYS=json.dumps(KEYS))
    send = ["send", "--url", server.url, "--source", "shop", "--id", "cli-1"]
    refused = await asyncio.to_thread(run_cli, *send)
    assert refused.returncode == 1 and refused.stderr.startswith("401")
    sent = await asyncio.to_thread(run_cli, *send, env={"INGESTD_API_KEY": A_KEY})
    assert sent.returncode == 0 and sent.stdout.startswith("202"), sent.stderr
    store = {"INGESTD_DATABASE_URL": server.database_url}
    status = await asyncio.to_thread(run_cli, "status", "--tenant", "acme", "cli-1", env=store)
    assert status.returncode == 0 and json.loads(status.stdout)["id"] == "cli-1"
    default = await asyncio.to_thread(run_cli, "status", "cli-1", env=store)
    assert default.returncode == 1  # the default tenant has no such event


async def test_open_paths_are_configurable(start: Start) -> None:
    server = await start(INGESTD_API_KEYS=json.dumps(KEYS), INGESTD_AUTH_OPEN_PATHS='["/ready"]')
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/ready")).status_code == 200
        assert_problem(await http.get("/metrics"), 401, "unauthorized")
        assert_problem(await http.get("/health"), 401, "unauthorized")
        assert (await http.get("/metrics", headers=bearer(ADMIN_KEY))).status_code == 200


@pytest.mark.slow
async def test_a_503_gives_its_tokens_back(start: Start) -> None:
    server = await start(INGESTD_RATE_LIMIT="0.001", INGESTD_RATE_LIMIT_BURST="1")
    event = {"source": "s", "id": "refund-1"}
    # Another writer holds SQLite's write lock: the commit waits out its busy timeout, 503.
    lock = sqlite3.connect(server.database_url.removeprefix("sqlite:///"), timeout=10)
    try:
        lock.execute("BEGIN IMMEDIATE")
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            failed = await http.post("/ingest", json=event)
            assert_problem(failed, 503, "store-unavailable")
            lock.rollback()
            retried = await http.post("/ingest", json=event)  # the one token is back
            assert retried.status_code == 202, retried.text
            assert_problem(await http.post("/ingest", json={"source": "s"}), 429, "rate-limited")
    finally:
        lock.close()


def test_a_repeated_key_stops_the_start_with_a_clear_message(tmp_path: Path) -> None:
    twice = json.dumps([{"id": "one", "key": INGEST_KEY}, {"id": "two", "key": INGEST_KEY}])
    env = {"INGESTD_API_KEYS": twice, "INGESTD_DATABASE_URL": f"sqlite:///{tmp_path}/i.db"}
    result = run_cli("serve", "--port", str(free_port()), env=env)
    assert result.returncode != 0
    assert "API keys 'one' and 'two' are the same key" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
