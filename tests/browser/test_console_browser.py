"""The console in a real headless Chromium against a real `ingestd serve` and a real
loopback receiver: what an operator does at 3 a.m., each page checked with axe-core."""

from __future__ import annotations

import base64
import json
import time
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
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("console-browser")
    (tmp / "ingestd.toml").write_text(config(receiver))
    keys = [
        {"id": "ops", "key": ADMIN, "scopes": ["ingest", "admin"]},
        {"id": "acme", "key": ACME, "tenant": "acme", "scopes": ["ingest", "admin"]},
    ]
    env = {
        "INGESTD_CONFIG": str(tmp / "ingestd.toml"),
        "INGESTD_API_KEYS": json.dumps(keys),
        "INGESTD_WEBHOOK_ALLOW_NETS": '["127.0.0.0/8"]',
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
        body: str = self.driver.find_element("tag name", "body").text
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


def test_every_page_checked_had_no_serious_violation(console: Console) -> None:
    assert console.checked, "no page was checked"
    assert all(v == [] for v in console.checked.values())
