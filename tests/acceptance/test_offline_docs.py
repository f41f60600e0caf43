"""`/docs` in a network with nothing but loopback: headless Chromium and the server share a
fresh network namespace; the page must list the operations and fetch only from itself."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi.openapi.docs import get_swagger_ui_html

from cdp import CHROMIUM, Browser, chromium
from support import INGESTD, ServerProcess, free_port

pytestmark = [
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium missing (make sys-deps)"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare missing"),
]

WAIT_READY = (
    "import time, urllib.request\n"
    "for _ in range(400):\n"
    "    try:\n"
    "        urllib.request.urlopen('{url}/ready', timeout=1); break\n"
    "    except OSError: time.sleep(0.05)\n"
    "else: raise SystemExit('ingestd did not get ready')\n"
)
OPERATIONS = (
    "[...document.querySelectorAll('.opblock-summary')].map(e => "
    "e.querySelector('.opblock-summary-method').innerText + ' ' + "
    "e.querySelector('.opblock-summary-path').innerText.replace(/\\u200b/g, ''))"
)


@pytest.fixture
async def offline(tmp_path: Path) -> AsyncIterator[tuple[Browser, str]]:
    """Chromium and `ingestd serve` alone in a network namespace: (browser, server URL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    pidfile = tmp_path / "server.pid"
    serve = (
        f"INGESTD_DATABASE_URL=sqlite:///{tmp_path}/ingestd.db {shlex.quote(INGESTD)} serve "
        f"--host 127.0.0.1 --port {port} >{tmp_path}/server.log 2>&1 & echo $! >{pidfile}"
    )
    wait = f"{shlex.quote(sys.executable)} -c {shlex.quote(WAIT_READY.format(url=url))}"
    try:
        async with chromium([serve, wait], netns=True) as browser:
            yield browser, url
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGTERM)


def foreign(requests: list[str], origin: str) -> list[str]:
    """Requests that left the page's own origin (data: URIs fetch nothing)."""
    return [u for u in requests if not u.startswith((origin + "/", "data:"))]


async def test_docs_list_the_operations_with_nothing_from_another_host(
    offline: tuple[Browser, str], tmp_path: Path
) -> None:
    browser, url = offline
    page = await browser.new_page()
    await page.navigate(f"{url}/docs")
    operations = await page.wait_for(f"({OPERATIONS}).length > 5 && {OPERATIONS}")
    # Open POST /ingest: its schema, parameters and "Try it out" render from the same files.
    await page.evaluate("document.querySelector('.opblock-post .opblock-summary-control').click()")
    await page.wait_for("!!document.querySelector('.opblock-post .try-out__btn')")
    await page.screenshot(tmp_path / "docs.png")
    for operation in ("POST /ingest", "POST /ingest/batch", "GET /events", "GET /health"):
        assert operation in operations, operations
    assert page.requests, "no request recorded"
    assert f"{url}/openapi.json" in page.requests
    assert foreign(page.requests, url) == []
    csp = page.responses[f"{url}/docs"]["content-security-policy"]
    assert "default-src 'self'" in csp
    violations = [m for m in page.messages if "Content Security Policy" in m]
    assert violations == []


async def test_the_probe_sees_a_page_that_loads_from_a_cdn(
    offline: tuple[Browser, str],
) -> None:
    """FastAPI's stock /docs page (what ingestd served before): its CDN requests are seen."""
    browser, url = offline
    stock = get_swagger_ui_html(openapi_url=f"{url}/openapi.json", title="stock").body
    page = await browser.new_page()
    await page.navigate("data:text/html," + urllib.parse.quote(bytes(stock).decode()))
    hosts = {urllib.parse.urlsplit(u).hostname for u in foreign(page.requests, url)}
    assert "cdn.jsdelivr.net" in hosts
    assert await page.evaluate("document.querySelectorAll('.opblock').length") == 0


async def test_docs_assets_are_served_with_keys_configured(tmp_path: Path) -> None:
    """With API keys, /docs stays open (INGESTD_AUTH_OPEN_PATHS) and so do its files."""
    env = {"INGESTD_API_KEYS": "k-0123456789abcdef"}
    server = ServerProcess(tmp_path, port=free_port(), env=env)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            page = await client.get("/docs")
            assert page.status_code == 200
            assert "default-src 'self'" in page.headers["content-security-policy"]
            for src in ("/docs/swagger-ui-bundle.js", "/docs/swagger-init.js"):
                assert f'src="{src}"' in page.text
                asset = await client.get(src)
                assert asset.status_code == 200, src
                assert asset.headers["content-type"].startswith("text/javascript")
            assert (await client.get("/docs/nope.js")).status_code == 401  # only its files
            auth = {"authorization": "Bearer k-0123456789abcdef"}
            missing = await client.get("/docs/nope.js", headers=auth)
            assert missing.status_code == 404
            assert missing.headers["content-type"] == "application/problem+json"
            assert (await client.get("/redoc", headers=auth)).status_code == 404
            assert (await client.get("/events")).status_code == 401
    finally:
        await server.stop()
