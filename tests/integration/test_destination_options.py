"""Every option of every kind is checked as it will be stored, before it commits (issue 14
item 5), on a real `ingestd serve`: a refused config is a 4xx problem and leaves nothing
(or the previous row) behind, so no later request turns it into a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from support import ServerProcess, running_server

HOOK = {"kind": "webhook", "url": "https://hooks.example/x", "secret": "whsec_" + "A" * 32}
MAIL = {"from": "a@example.com", "to": "b@example.com", "subject": "s"}
SMTP = {"kind": "smtp", "host": "mail.example", **MAIL}
SENDGRID = {"kind": "sendgrid", "api_key": "SG.x", **MAIL}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(tmp_path_factory.mktemp("options")) as proc:
        yield proc


@pytest.fixture
async def client(shared: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=shared.url, timeout=10) as http:
        yield http


REFUSED: list[tuple[str, dict[str, Any]]] = [
    ("inbox visibility text", {"kind": "inbox", "visibility": "abc"}),
    ("inbox visibility negative", {"kind": "inbox", "visibility": -5}),
    ("inbox visibility zero", {"kind": "inbox", "visibility": 0}),
    ("inbox unknown option", {"kind": "inbox", "visibilty": 5}),
    ("schedule negative", {**HOOK, "retry_schedule": [0, -1]}),
    ("schedule huge", {**HOOK, "retry_schedule": [1e12]}),
    ("schedule empty", {**HOOK, "retry_schedule": []}),
    ("schedule text", {**HOOK, "retry_schedule": ["soon"]}),
    ("timeout text", {**HOOK, "timeout": "abc"}),
    ("timeout negative", {**HOOK, "timeout": -1}),
    ("timeout zero", {**HOOK, "timeout": 0}),
    ("timeout bool", {**HOOK, "connect_timeout": True}),
    ("webhook typo", {**HOOK, "timout": 5}),
    ("breaker text", {**HOOK, "breaker_cooldown": "x"}),
    ("breaker rate", {**HOOK, "breaker_failure_rate": 2}),
    ("breaker calls float", {**HOOK, "breaker_min_calls": 2.5}),
    ("smtp port", {**SMTP, "port": 70000}),
    ("smtp port text", {**SMTP, "port": "25"}),
    ("smtp password number", {**SMTP, "password": 1234}),
    ("sendgrid timeout", {**SENDGRID, "timeout": 1e9}),
    ("sendgrid unknown", {**SENDGRID, "cc": "c@example.com"}),
]


@pytest.mark.parametrize(("case", "doc"), REFUSED, ids=[c for c, _ in REFUSED])
async def test_an_invalid_option_is_a_422_and_stores_nothing(
    client: httpx.AsyncClient, case: str, doc: dict[str, Any]
) -> None:
    name = "bad-" + case.replace(" ", "-")
    response = await client.post("/destinations", json={"name": name, **doc})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert (await client.get(f"/destinations/{name}")).status_code == 404
    inbox = await client.get(f"/inbox/{name}")
    assert inbox.status_code == 404, inbox.text


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name":"nan1","kind":"inbox","visibility":NaN}',
        b'{"name":"nan2","kind":"webhook","url":"https://h.example/","retry_schedule":[NaN]}',
        b'{"name":"nan3","kind":"webhook","url":"https://h.example/","timeout":Infinity}',
    ],
)
async def test_nan_and_infinity_are_not_json(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post(
        "/destinations", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    names = {d["name"] for d in (await client.get("/destinations")).json()["destinations"]}
    assert not {"nan1", "nan2", "nan3"} & names


async def test_valid_options_are_kept_and_a_bad_patch_changes_nothing(
    client: httpx.AsyncClient,
) -> None:
    made = await client.post(
        "/destinations", json={"name": "box", "kind": "inbox", "visibility": 12.5}
    )
    assert made.status_code == 201, made.text
    hook = await client.post(
        "/destinations",
        json={"name": "hook", **HOOK, "timeout": 3, "retry_schedule": [0, 1.5],
              "breaker_cooldown": 2, "breaker_min_calls": 3},
    )  # fmt: skip
    assert hook.status_code == 201, hook.text
    for patch in ({"visibility": "abc"}, {"visibility": -1}, {"nope": 1}):
        response = await client.patch("/destinations/box", json=patch)
        assert response.status_code == 422, response.text
    assert (await client.get("/destinations/box")).json()["visibility"] == 12.5
    assert (await client.get("/inbox/box")).status_code == 200
    response = await client.patch("/destinations/hook", json={"retry_schedule": [-3]})
    assert response.status_code == 422
    assert (await client.get("/destinations/hook")).json()["retry_schedule"] == [0, 1.5]
