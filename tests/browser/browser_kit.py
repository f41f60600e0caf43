"""What the browser tests share besides fixtures: axe-core's verdict on a page and a
threaded loopback webhook receiver (Selenium blocks the test's thread)."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"


def axe_violations(driver: Any) -> list[dict[str, Any]]:
    """axe-core's critical and serious violations on the current page."""
    if not driver.execute_script("return typeof window.axe !== 'undefined'"):
        driver.execute_script(AXE.read_text())
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        "  .then(r => done(JSON.stringify(r.violations)))"
        "  .catch(e => done(JSON.stringify([{id: 'axe-error', impact: 'critical',"
        "    help: String(e), nodes: []}])));"
    )
    found: list[dict[str, Any]] = json.loads(result)
    return [v for v in found if v.get("impact") in ("critical", "serious")]


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A loopback webhook receiver on its own threads (Selenium blocks the test's thread)."""

    statuses: dict[str, int] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def received(self, path: str) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path]
