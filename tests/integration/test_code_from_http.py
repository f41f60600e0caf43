"""Request data is never code (issue 14 items 2-3), on a real `ingestd serve`.

No `module:attr` that arrives over HTTP is imported or called: handler targets and custom
kinds come from the TOML file or INGESTD_HANDLER_ALLOW / INGESTD_DESTINATION_KINDS only.
A handler raising SystemExit or KeyboardInterrupt is a failed attempt, not a dead process.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from support import ServerProcess, handler_env, running_server, wait_for

SHORT = [0, 0.1]
FILE_DESTINATIONS = [
    {"name": "exits", "kind": "handler", "handler": "handlers.sinks:exits",
     "event_types": ["exit.*"], "retry_schedule": SHORT},
    {"name": "interrupts", "kind": "handler", "handler": "handlers.sinks:interrupts",
     "event_types": ["interrupt.*"], "retry_schedule": SHORT},
    {"name": "audit", "kind": "handler", "handler": "handlers.sinks:ok",
     "event_types": ["audit.*"]},
]  # fmt: skip


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("code-from-http")
    env = handler_env(
        tmp,
        FILE_DESTINATIONS,
        INGESTD_HANDLER_ALLOW=json.dumps(["handlers.sinks:ok_async"]),
        INGESTD_DESTINATION_KINDS=json.dumps({"custom": "handlers.kinds:Recorder"}),
    )
    with running_server(tmp, env) as proc:
        yield proc


@pytest.fixture
async def client(shared: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=shared.url, timeout=10) as http:
        yield http


def tripped(server: ServerProcess) -> list[str]:
    return sorted(p.name for p in server.tmp.glob("tripwire-*"))


REFUSED = [
    # The two of the report: a handler that exits the process, a kind that runs a function.
    {"name": "x1", "kind": "handler", "handler": "sys:exit"},
    {"name": "x2", "kind": "os:system"},
    {"name": "x3", "kind": "this:x"},  # importing `this` prints the Zen of Python
    {"name": "x4", "kind": "handler", "handler": "handlers.tripwire:called"},
    {"name": "x5", "kind": "handlers.tripwire:Kind"},
    {"name": "x6", "kind": "handler", "handler": "handlers.sinks"},  # not a target at all
    {"name": "x7", "kind": "handler", "handler": ["handlers.sinks:ok"]},
    # An allowed module's neighbour function is not allowed by an exact target.
    {"name": "x8", "kind": "handler", "handler": "handlers.sinks:fail"},
]


@pytest.mark.parametrize("doc", REFUSED, ids=[d["name"] for d in REFUSED])
async def test_code_named_over_http_is_refused_unimported(
    client: httpx.AsyncClient, shared: ServerProcess, doc: dict[str, Any]
) -> None:
    response = await client.post("/destinations", json=doc)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    detail = response.json()["detail"]
    assert any(word in detail for word in ("not allowed", "unknown", "must look like")), detail
    assert (await client.get(f"/destinations/{doc['name']}")).status_code == 404
    assert tripped(shared) == []
    assert "Beautiful is better than ugly" not in shared.logs()
    assert (await client.get("/health")).status_code == 200


async def test_a_file_handler_cannot_be_patched_into_other_code(
    client: httpx.AsyncClient, shared: ServerProcess
) -> None:
    response = await client.patch("/destinations/audit", json={"handler": "os:system"})
    assert response.status_code == 422, response.text
    response = await client.patch("/destinations/audit", json={"kind": "handlers.tripwire:Kind"})
    assert response.status_code == 422, response.text
    row = (await client.get("/destinations/audit")).json()
    assert (row["kind"], row["handler"]) == ("handler", "handlers.sinks:ok")
    assert tripped(shared) == []


async def test_allowed_targets_and_configured_kinds_can_be_created(
    client: httpx.AsyncClient, shared: ServerProcess
) -> None:
    made = await client.post(
        "/destinations",
        json={"name": "late", "kind": "handler", "handler": "handlers.sinks:ok_async",
              "event_types": ["late.*"]},
    )  # fmt: skip
    assert made.status_code == 201, made.text
    custom = await client.post(
        "/destinations", json={"name": "rec", "kind": "custom", "event_types": ["rec.*"]}
    )
    assert custom.status_code == 201, custom.text
    for kind, name in (("late.x", "ok_async.log"), ("rec.x", "recorder.log")):
        response = await client.post("/ingest", json={"source": "code", "type": kind})
        assert response.status_code == 202
        event_id = response.json()["id"]
        await wait_for(functools.partial(_logged, shared, name, event_id), timeout=10)


async def _logged(server: ServerProcess, name: str, event_id: str) -> bool:
    path = server.tmp / name
    return path.exists() and event_id in path.read_text()


@pytest.mark.parametrize(
    ("event_type", "log", "error"),
    [("exit.now", "exits.log", "SystemExit"), ("interrupt.now", "interrupts.log", "Keyboard")],
)
async def test_a_handler_raising_base_exceptions_fails_the_attempt_only(
    client: httpx.AsyncClient, shared: ServerProcess, event_type: str, log: str, error: str
) -> None:
    response = await client.post("/ingest", json={"source": "code", "type": event_type})
    assert response.status_code == 202
    event_id = response.json()["id"]

    async def dead() -> dict[str, Any] | None:
        status = (await client.get(f"/ingest/{event_id}/status")).json()
        return status if status["status"] == "dead" else None

    status = await wait_for(dead, timeout=15)
    [delivery] = status["destinations"]
    assert delivery["attempts"] == len(SHORT)
    assert error in delivery["last_error"]
    assert (shared.tmp / log).read_text().count(event_id) == len(SHORT)
    assert shared.proc is not None and shared.proc.poll() is None  # still running
    # ...and still serving.
    assert (await client.post("/ingest", json={"source": "code", "type": "x"})).status_code == 202
