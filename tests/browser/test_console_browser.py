"""The console in a real headless Chromium against a real `ingestd serve` and a real
loopback receiver: what an operator does at 3 a.m., each page checked with axe-core."""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from browser_kit import Receiver, axe_violations

from support import ServerProcess, running_server

pytestmark = pytest.mark.slow

ADMIN = "browser-admin-key-0123456789"
ACME = "browser-acme-key-0123456789"
READ = "browser-read-key-0123456789"
SECRET = "whsec_" + base64.b64encode(b"console-browser-test-secret!").decode()


def config(receiver: Receiver) -> str:
    return f"""
[[destinations]]
name = "orders"
kind = "webhook"
url = "{receiver.url("/orders")}"
secret = "{SECRET}"
event_types = ["order.*"]

[[destinations]]
name = "flaky"
kind = "webhook"
url = "{receiver.url("/flaky")}"
secret = "{SECRET}"
event_types = ["invoice.*"]
retry_schedule = [0, 0.2, 0.2]

[[destinations]]
name = "pull"
kind = "inbox"
event_types = ["ticket.*"]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("console-browser")
    (tmp / "ingestd.toml").write_text(config(receiver))
    keys = [
        {"id": "ops", "key": ADMIN, "scopes": ["ingest", "admin"]},
        {"id": "acme", "key": ACME, "tenant": "acme", "scopes": ["ingest", "admin"]},
        {"id": "viewer", "key": READ, "scopes": ["read"]},
    ]
    env = {
        "INGESTD_CONFIG": str(tmp / "ingestd.toml"),
        "INGESTD_API_KEYS": json.dumps(keys),
        "INGESTD_WEBHOOK_ALLOW_NETS": '["127.0.0.0/8"]',
        "INGESTD_BREAKER_CONSECUTIVE_FAILURES": "50",
    }
    with running_server(tmp, env) as proc:
        yield proc


def ingest(server: ServerProcess, key: str, event: dict[str, Any]) -> str:
    answer = httpx.post(
        f"{server.url}/ingest", json=event, headers={"authorization": f"Bearer {key}"}
    )
    assert answer.status_code == 202, answer.text
    event_id: str = answer.json()["id"]
    return event_id


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


class Console:
    """The browser, pointed at one server, with the page checks every visit gets."""

    def __init__(self, driver: Any, server: ServerProcess, shots: Path) -> None:
        self.driver = driver
        self.server = server
        self.shots = shots
        self.checked: dict[str, list[dict[str, Any]]] = {}

    def open(self, path: str) -> None:
        self.driver.get(self.server.url + path)

    def text(self) -> str:
        """The page's text; empty while a navigation has no body yet."""
        from selenium.common.exceptions import WebDriverException

        try:
            body: str = self.driver.find_element("tag name", "body").text
        except WebDriverException:
            return ""
        return body

    def check_page(self, name: str) -> None:
        """axe-core on the page as it is now, and its screenshot."""
        self.checked[name] = axe_violations(self.driver)
        self.driver.save_screenshot(str(self.shots / f"{name}.png"))
        assert self.checked[name] == [], f"{name}: {json.dumps(self.checked[name], indent=1)}"

    def sign_in(self, key: str) -> None:
        self.open("/console/sign-out-first")  # any page: the cookie is path-scoped
        self.driver.delete_all_cookies()
        self.open("/console/sign-in")
        self.driver.find_element("id", "key").send_keys(key)
        self.driver.find_element("css selector", "form button[type=submit]").click()
        try:
            wait_until(lambda: "Sign out" in self.text(), 5, "signed in")
        except AssertionError:
            raise AssertionError(self.driver.current_url + "\n" + self.text()) from None


@pytest.fixture(scope="module")
def console(driver: Any, server: ServerProcess, shots: Path) -> Console:
    return Console(driver, server, shots)


def test_sign_in_page_is_accessible(console: Console) -> None:
    console.driver.delete_all_cookies()
    console.open("/console")
    assert "/console/sign-in" in console.driver.current_url
    console.check_page("sign-in")


def test_an_event_shows_on_the_live_overview_and_in_events(
    console: Console, server: ServerProcess
) -> None:
    console.sign_in(ADMIN)
    console.open("/console")
    sent = time.monotonic()
    event_id = ingest(
        server, ADMIN, {"source": "shop", "type": "order.placed", "id": "ord-1001", "data": {}}
    )
    wait_until(lambda: event_id in console.text(), 2.0, "event on the live overview")
    assert time.monotonic() - sent <= 2.0
    console.check_page("overview")
    console.open("/console/events")
    assert event_id in console.text()
    console.check_page("events")
    console.driver.find_element("link text", event_id).click()
    wait_until(lambda: "Idempotency key" in console.text(), 5, "event page")
    assert "shop:ord-1001" in console.text()
    wait_until(lambda: "succeeded" in console.text(), 10, "delivered to orders")
    console.check_page("event")


def test_tenant_b_never_sees_tenant_a(console: Console, server: ServerProcess) -> None:
    ingest(server, ADMIN, {"source": "shop", "type": "order.placed", "id": "only-default"})
    ingest(server, ACME, {"source": "shop", "type": "order.placed", "id": "only-acme"})
    console.sign_in(ACME)
    console.open("/console/events")
    assert "only-acme" in console.text() and "only-default" not in console.text()
    console.open("/console/events/only-default")
    assert "no event with id" in console.text()
    console.open("/console")
    assert "only-default" not in console.text()
    console.open("/console/events?source=shop")
    assert "only-default" not in console.text()


def post_from_page(console: Console, path: str, body: str) -> int:
    """A form POST made by script from the page itself (same origin, the session cookie)."""
    status: int = console.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(arguments[0], {method: 'POST', credentials: 'same-origin',"
        " headers: {'content-type': 'application/x-www-form-urlencoded'}, body: arguments[1]})"
        ".then(r => done(r.status));",
        path,
        body,
    )
    return status


def find(console: Console, css: str) -> Any:
    return console.driver.find_element("css selector", css)


def verify(hit: Any, secret: str) -> dict[str, Any]:
    """The receiver's check: Standard Webhooks signature over id, timestamp and body."""
    from standardwebhooks.webhooks import Webhook

    headers = {k.lower(): v for k, v in hit.headers.items()}
    verified: dict[str, Any] = Webhook(secret).verify(hit.body, headers)
    return verified


def test_a_failing_destination_shows_its_attempts_then_replay_delivers(
    console: Console, server: ServerProcess, receiver: Receiver
) -> None:
    receiver.statuses["/flaky"] = 500
    console.sign_in(ADMIN)
    ids = [
        ingest(server, ADMIN, {"source": "billing", "type": "invoice.created", "id": f"inv-{n}"})
        for n in range(3)
    ]
    wait_until(lambda: len(receiver.received("/flaky")) >= 9, 15, "three attempts each")
    console.open(f"/console/events/{ids[0]}")
    wait_until(lambda: "dead" in console.text(), 10, "dead after its attempts")
    assert "3 attempts" in console.text()
    rows = console.driver.find_elements("css selector", "tr[data-attempt]")
    assert [r.get_attribute("data-attempt") for r in rows] == ["1", "2", "3"]
    codes = [r.find_element("css selector", "[data-status-code]").text for r in rows]
    assert codes == ["500", "500", "500"]  # each attempt with its status
    assert "receiver down" in rows[-1].text  # and the start of the receiver's answer
    console.check_page("event-dead")
    console.open("/console")
    wait_until(lambda: "flaky" in console.text(), 5, "the failing destination on the overview")
    console.check_page("overview-trouble")
    console.open("/console/destinations")
    row = find(console, "tr[data-destination=flaky]").text
    assert "3" in row  # its dead letters
    console.check_page("destinations")

    receiver.statuses["/flaky"] = 200
    console.open("/console/dead?destination=flaky")
    assert all(i in console.text() for i in ids)
    console.check_page("dead-letters")
    find(console, "#all-matching").click()
    find(console, "#replay").click()
    wait_until(lambda: "Replay 3 dead letters" in console.text(), 5, "the count first")
    console.check_page("dead-confirm")
    before = len(receiver.received("/flaky"))
    find(console, "#confirm").click()
    wait_until(lambda: "Replayed 3" in console.text(), 5, "replayed")
    wait_until(lambda: len(receiver.received("/flaky")) >= before + 3, 10, "redelivered")
    replayed = receiver.received("/flaky")[before:]
    assert sorted(verify(h, SECRET)["id"] for h in replayed) == sorted(ids)
    console.open("/console/dead?destination=flaky")
    assert "No dead letter matches" in console.text()


def test_disable_and_enable_a_destination(console: Console, server: ServerProcess) -> None:
    console.sign_in(ADMIN)
    console.open("/console/destinations/orders")
    find(console, "#disable").click()
    wait_until(lambda: "Disabled: deliveries wait" in console.text(), 5, "disabled")
    assert "disabled" in find(console, "[data-health]").text
    console.check_page("destination")
    console.open("/console")
    assert "orders is disabled" in console.text()
    console.open("/console/destinations/orders")
    find(console, "#enable").click()
    wait_until(lambda: "Enabled: deliveries flow again" in console.text(), 5, "enabled")
    assert find(console, "[data-health]").text == "healthy"


def test_rotate_a_secret_and_send_a_test_event(
    console: Console, server: ServerProcess, receiver: Receiver
) -> None:
    console.sign_in(ADMIN)
    console.open("/console/destinations/orders")
    console.driver.execute_script("window.confirm = () => true;")
    find(console, "#rotate").click()
    fresh = wait_until(
        lambda: console.driver.find_elements("css selector", "[data-new-secret]"), 5, "new secret"
    )[0].text
    assert fresh.startswith("whsec_") and fresh != SECRET
    assert find(console, "[data-secret-count]").text == "2"
    before = len(receiver.received("/orders"))
    find(console, "#send-test").click()
    wait_until(lambda: "ingestd.test" in console.text(), 5, "the test event's page")
    wait_until(lambda: "succeeded" in console.text(), 10, "its attempt")
    console.check_page("test-event")
    hit = receiver.received("/orders")[before]
    assert verify(hit, SECRET)["type"] == "ingestd.test"  # the old secret still signs
    assert verify(hit, fresh)["type"] == "ingestd.test"  # and so does the new one
    console.open("/console/destinations/orders")
    console.driver.execute_script("window.confirm = () => true;")
    find(console, "#end-overlap").click()
    wait_until(lambda: "Only the newest secret" in console.text(), 5, "overlap ended")
    assert find(console, "[data-secret-count]").text == "1"


def test_create_and_edit_a_destination(
    console: Console, server: ServerProcess, receiver: Receiver
) -> None:
    console.sign_in(ADMIN)
    console.open("/console/destinations/new")
    console.check_page("destination-new")
    find(console, "#d-name").send_keys("audit")
    find(console, "#d-url").send_keys(receiver.url("/audit"))
    types = find(console, "#d-types")
    types.clear()
    types.send_keys("audit.*")
    find(console, "#d-retry").send_keys("0, 1, 5")
    find(console, "#destination-form button[type=submit]").click()
    wait_until(lambda: "Created." in console.text(), 5, "created")
    assert "audit.*" in console.text() and "0.0, 1.0, 5.0" in console.text()
    ingest(server, ADMIN, {"source": "iam", "type": "audit.login", "id": "login-1"})
    wait_until(lambda: receiver.received("/audit"), 10, "delivered to the new destination")
    assert verify(receiver.received("/audit")[0], _secret_of(server, "audit"))["id"] == "login-1"
    console.open("/console/destinations/audit/edit")
    types = find(console, "#d-types")
    types.clear()
    types.send_keys("audit.*, iam.*")
    find(console, "#destination-form button[type=submit]").click()
    wait_until(lambda: "Saved." in console.text(), 5, "saved")
    assert "audit.*, iam.*" in console.text()
    console.open("/console/destinations/new")
    find(console, "#d-name").send_keys("bad one")
    find(console, "#destination-form button[type=submit]").click()
    assert "/console/destinations/new" in console.driver.current_url  # the browser refused it


def _secret_of(server: ServerProcess, name: str) -> str:
    """The generated secret, read where only the operator can: the store."""
    import sqlite3

    db = server.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(db) as conn:
        (config,) = conn.execute(
            "SELECT config FROM destinations WHERE name = ?", (name,)
        ).fetchone()
    secret: str = json.loads(config)["secret"]
    return secret


def test_a_forged_post_without_the_csrf_token_is_refused(console: Console) -> None:
    console.sign_in(ADMIN)
    console.open("/console/destinations/orders")
    assert post_from_page(console, "/console/destinations/orders/enabled", "enabled=false") == 403
    console.open("/console/destinations/orders")
    assert find(console, "[data-health]").text == "healthy"  # nothing changed


def test_a_read_key_sees_everything_and_no_admin_control(
    console: Console, server: ServerProcess
) -> None:
    ingest(server, ADMIN, {"source": "billing", "type": "invoice.created", "id": "inv-read"})
    console.sign_in(READ)
    assert "read-only" in console.text()
    for path in (
        "/console",
        "/console/events",
        "/console/destinations",
        "/console/destinations/orders",
        "/console/dead",
        "/console/inbox/pull",
    ):
        console.open(path)
        assert "Sign out" in console.text(), path
        forms = [
            f.get_attribute("action")
            for f in console.driver.find_elements("css selector", "form[method=post]")
        ]
        assert all(a.endswith("/console/sign-out") for a in forms), (path, forms)
        assert not console.driver.find_elements("css selector", ".admin-controls"), path
    assert "New destination" not in console.text()
    console.open("/console/destinations/orders")
    console.check_page("destination-read-only")
    # Even with the session's own CSRF token, a change is refused to a read key.
    token = find(console, "input[name=csrf]").get_attribute("value")
    body = urllib.parse.urlencode({"enabled": "false", "csrf": token})
    assert post_from_page(console, "/console/destinations/orders/enabled", body) == 403
    console.open("/console/destinations/orders")
    assert find(console, "[data-health]").text == "healthy"


def test_inbox_peek_and_keys(console: Console, server: ServerProcess) -> None:
    ingest(server, ADMIN, {"source": "desk", "type": "ticket.opened", "id": "t-1"})
    console.sign_in(ADMIN)
    console.open("/console/inbox")
    console.check_page("inbox")
    console.open("/console/inbox/pull")
    assert "t-1" in console.text()
    console.check_page("inbox-peek")
    console.open("/console/inbox/pull")
    assert "t-1" in console.text()  # still waiting: peeking leased nothing
    answer = httpx.get(f"{server.url}/inbox/pull", headers={"authorization": f"Bearer {ADMIN}"})
    assert [e["event"]["id"] for e in answer.json()["events"]] == ["t-1"]
    console.open("/console/keys")
    assert "ops" in console.text()
    console.check_page("keys")


def test_make_a_key_sign_in_with_it_then_revoke_it(console: Console, server: ServerProcess) -> None:
    console.sign_in(ADMIN)
    console.open("/console/keys")
    find(console, "#k-name").send_keys("on-call dashboard")
    find(console, "#k-scope-read").click()  # beside ingest, checked by default
    find(console, "#key-form button[type=submit]").click()
    shown = wait_until(
        lambda: console.driver.find_elements("css selector", "[data-new-key]"), 5, "new key"
    )
    plaintext = shown[0].text
    assert plaintext.startswith("igd_")
    console.check_page("keys-created")
    event = {"source": "desk", "type": "ticket.opened", "id": "k-1"}
    assert ingest(server, plaintext, event)
    console.open("/console/keys")
    assert plaintext not in console.driver.page_source  # shown once
    key_id = find(console, "#stored-keys tbody tr[data-key]").get_attribute("data-key")
    console.sign_in(plaintext)
    assert "read-only" in console.text()
    console.sign_in(ADMIN)
    console.open("/console/keys")
    console.driver.execute_script("window.confirm = () => true;")
    find(console, f"#revoke-{key_id}").click()
    wait_until(lambda: "Revoked" in console.text(), 5, "revoked")
    refused = httpx.post(
        f"{server.url}/ingest", json=event, headers={"authorization": f"Bearer {plaintext}"}
    )
    assert refused.status_code == 401
    assert httpx.post(f"{server.url}/console/sign-in", data={"key": plaintext}).status_code == 401


def test_every_page_checked_had_no_serious_violation(console: Console) -> None:
    assert console.checked, "no page was checked"
    assert all(v == [] for v in console.checked.values())
