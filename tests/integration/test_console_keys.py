"""The console's Keys page over HTTP against a real `ingestd serve`: a stored key made
there (its plaintext shown once) authenticates against the API, revoked there the API
refuses it; a read key gets no controls, a POST without the CSRF token is refused, and a
tenant's admin sees and revokes its own tenant's keys only."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest

from support import ServerProcess, running_server

ADMIN = "keys-admin-key-0123456789"
ACME = "keys-acme-key-0123456789"
READ = "keys-read-key-0123456789"
KEYS = [
    {"id": "ops", "key": ADMIN, "scopes": ["ingest", "admin"]},
    {"id": "acme-admin", "key": ACME, "tenant": "acme", "scopes": ["ingest", "admin"]},
    {"id": "viewer", "key": READ, "scopes": ["read"]},
]
EVENT = {"source": "shop", "type": "order.paid", "data": {}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"INGESTD_API_KEYS": json.dumps(KEYS)}
    with running_server(tmp_path_factory.mktemp("console-keys"), env) as proc:
        yield proc


def signed_in(server: ServerProcess, key: str) -> httpx.Client:
    client = httpx.Client(base_url=server.url, follow_redirects=False)
    answer = client.post("/console/sign-in", data={"key": key})
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match[1]


def state_of(client: httpx.Client, key_id: str) -> str:
    """The state the Keys page shows for one stored key ('' when it does not list it)."""
    page = client.get("/console/keys").text
    row = re.search(rf'<tr data-key="{key_id}">.*?</tr>', page, re.S)
    if row is None:
        return ""
    state = re.search(r"data-state>(\w+)<", row[0])
    assert state, row[0]
    return state[1]


def ingest_status(server: ServerProcess, key: str) -> int:
    answer = httpx.post(
        f"{server.url}/ingest", json=EVENT, headers={"authorization": f"Bearer {key}"}
    )
    return answer.status_code


def make_key(client: httpx.Client, name: str) -> tuple[str, str]:
    """(plaintext, id) of a new ingest key made on the Keys page."""
    token = csrf_of(client.get("/console/keys").text)
    answer = client.post("/console/keys", data={"csrf": token, "name": name, "scopes": ["ingest"]})
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    shown = re.search(r"<code data-new-key>(igd_[^<]+)</code>", answer.text)
    assert shown, answer.text
    row = re.search(
        r'<tr data-key="(key_[0-9a-f]+)">\s*<th scope="row">\1</th><td>' + name, answer.text
    )
    assert row, answer.text
    return shown[1], row[1]


def test_a_key_made_on_the_page_is_shown_once_and_authenticates(server: ServerProcess) -> None:
    ops = signed_in(server, ADMIN)
    plaintext, key_id = make_key(ops, "checkout")
    assert ingest_status(server, plaintext) == 202
    listing = ops.get("/console/keys").text
    assert plaintext not in listing  # shown on the answer that made it, never again
    assert f'data-key="{key_id}"' in listing
    assert plaintext[:12] in listing  # the prefix it is recognised by
    assert state_of(ops, key_id) == "active"


def test_a_key_revoked_on_the_page_is_refused_by_the_api(server: ServerProcess) -> None:
    ops = signed_in(server, ADMIN)
    plaintext, key_id = make_key(ops, "to-revoke")
    assert ingest_status(server, plaintext) == 202
    token = csrf_of(ops.get("/console/keys").text)
    answer = ops.post(f"/console/keys/{key_id}/revoke", data={"csrf": token})
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/console/keys?notice=revoked")
    assert ingest_status(server, plaintext) == 401
    row = re.search(rf'<tr data-key="{key_id}">.*?</tr>', ops.get("/console/keys").text, re.S)
    assert row and "data-state>revoked<" in row[0] and f"revoke-{key_id}" not in row[0]
    # Revoking again changes nothing and is not an error.
    again = ops.post(f"/console/keys/{key_id}/revoke", data={"csrf": token})
    assert again.status_code == 303


def test_a_read_key_gets_no_controls_and_cannot_post(server: ServerProcess) -> None:
    ops = signed_in(server, ADMIN)
    _, key_id = make_key(ops, "seen-by-viewer")
    viewer = signed_in(server, READ)
    page = viewer.get("/console/keys")
    assert page.status_code == 200 and f'data-key="{key_id}"' in page.text
    assert 'id="key-form"' not in page.text and "/revoke" not in page.text
    token = csrf_of(page.text)  # the sign-out form's: a valid token, still not an admin
    made = viewer.post("/console/keys", data={"csrf": token, "scopes": ["ingest"]})
    assert made.status_code == 403 and "may only read" in made.json()["detail"]
    revoked = viewer.post(f"/console/keys/{key_id}/revoke", data={"csrf": token})
    assert revoked.status_code == 403
    assert state_of(ops, key_id) == "active"


def test_a_post_without_the_csrf_token_is_refused(server: ServerProcess) -> None:
    ops = signed_in(server, ADMIN)
    before = ops.get("/console/keys").text.count("<tr data-key=")
    for data in ({"name": "forged", "scopes": "ingest"}, {"csrf": "x", "name": "forged"}):
        answer = ops.post("/console/keys", data=data)
        assert answer.status_code == 403 and "CSRF" in answer.json()["detail"]
    assert ops.get("/console/keys").text.count("<tr data-key=") == before
    _, key_id = make_key(ops, "kept")
    answer = ops.post(f"/console/keys/{key_id}/revoke", data={"csrf": ""})
    assert answer.status_code == 403
    assert state_of(ops, key_id) == "active"


def test_a_tenant_admin_manages_its_own_tenant_keys_only(server: ServerProcess) -> None:
    ops = signed_in(server, ADMIN)
    _, ops_key = make_key(ops, "operators")
    acme = signed_in(server, ACME)
    acme_plain, acme_key = make_key(acme, "acme-shop")
    assert ops_key not in acme.get("/console/keys").text
    assert acme_key not in ops.get("/console/keys").text
    token = csrf_of(acme.get("/console/keys").text)
    answer = acme.post(f"/console/keys/{ops_key}/revoke", data={"csrf": token})
    assert answer.status_code == 404
    assert state_of(ops, ops_key) == "active"
    created = httpx.post(
        f"{server.url}/ingest", json=EVENT, headers={"authorization": f"Bearer {acme_plain}"}
    )
    assert created.status_code == 202
