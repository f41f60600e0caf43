"""Debian's headless Chromium driven over the DevTools protocol on a pipe, for page tests.

The protocol runs over file descriptors 3 and 4 (`--remote-debugging-pipe`), not a TCP
port, so the browser can live in a network namespace of its own (`unshare --net`) that has
nothing but loopback, while the test talks to it from outside. Every request the page
makes is recorded from `Network.requestWillBeSent`, console and CSP messages from
`Log.entryAdded` / `Runtime.consoleAPICalled`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# As the machine notes say: without the background-networking flags Chromium keeps
# trying to reach Google's hosts, which a closed network refuses many times a start.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--remote-debugging-pipe",
    "--window-size=1280,2000",
)


@dataclass
class Page:
    """One tab: send commands in its session, read what it did."""

    browser: Browser
    session: str
    requests: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    responses: dict[str, dict[str, str]] = field(default_factory=dict)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.browser.send(method, session=self.session, **params)

    async def navigate(self, url: str, timeout: float = 20.0) -> None:
        loaded = self.browser.expect("Page.loadEventFired", self.session)
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(loaded, timeout)

    async def evaluate(self, expression: str) -> Any:
        reply = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return reply["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        """Poll a JavaScript expression until it is truthy; returns its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if loop.time() > deadline:
                raise AssertionError(f"{expression!r} still falsy after {timeout}s")
            await asyncio.sleep(0.1)

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))

    def on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Network.responseReceived":
            response = params["response"]
            headers = {k.lower(): v for k, v in response.get("headers", {}).items()}
            self.responses[response["url"]] = headers
        elif method == "Log.entryAdded":
            entry = params["entry"]
            self.messages.append(f"{entry['level']}: {entry['text']}")
        elif method == "Runtime.consoleAPICalled":
            texts = (str(a.get("value", a.get("description", ""))) for a in params["args"])
            self.messages.append(f"console.{params['type']}: " + " ".join(texts))
        elif method == "Runtime.exceptionThrown":
            self.messages.append(f"exception: {params['exceptionDetails'].get('text')}")


class Browser:
    """A Chromium process and its DevTools pipe."""

    def __init__(self, proc: subprocess.Popen[bytes], to_browser: int, from_browser: int):
        self.proc = proc
        self.to_browser = to_browser
        self.from_browser = from_browser
        self.next_id = 0
        self.replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.waiters: list[tuple[str, str | None, asyncio.Future[dict[str, Any]]]] = []
        self.pages: dict[str, Page] = {}
        self.reader: asyncio.Task[None] | None = None

    async def send(self, method: str, session: str | None = None, **params: Any) -> Any:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        reply = asyncio.get_running_loop().create_future()
        self.replies[self.next_id] = reply
        data = json.dumps(message).encode() + b"\0"
        await asyncio.to_thread(os.write, self.to_browser, data)
        result = await asyncio.wait_for(reply, 30)
        if "error" in result:
            raise RuntimeError(f"{method}: {result['error']}")
        return result.get("result", {})

    def expect(self, method: str, session: str | None) -> asyncio.Future[dict[str, Any]]:
        future = asyncio.get_running_loop().create_future()
        self.waiters.append((method, session, future))
        return future

    async def read(self) -> None:
        buffer = b""
        while True:
            chunk = await asyncio.to_thread(os.read, self.from_browser, 1 << 16)
            if not chunk:
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                self.dispatch(json.loads(raw))

    def dispatch(self, message: dict[str, Any]) -> None:
        if "id" in message:
            reply = self.replies.pop(message["id"], None)
            if reply is not None and not reply.done():
                reply.set_result(message)
            return
        method, session = message["method"], message.get("sessionId")
        if session in self.pages:
            self.pages[session].on_event(method, message.get("params", {}))
        for waiter in list(self.waiters):
            if waiter[0] == method and waiter[1] in (None, session):
                self.waiters.remove(waiter)
                if not waiter[2].done():
                    waiter[2].set_result(message.get("params", {}))

    async def new_page(self) -> Page:
        target = await self.send("Target.createTarget", url="about:blank")
        attached = await self.send(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        page = Page(self, attached["sessionId"])
        self.pages[page.session] = page
        for domain in ("Page", "Network", "Log", "Runtime"):
            await page.send(f"{domain}.enable")
        return page


@contextlib.asynccontextmanager
async def chromium(before: Sequence[str] = (), netns: bool = False) -> AsyncIterator[Browser]:
    """Start Chromium; with `netns`, in a new network namespace whose only interface is
    loopback, after running the shell commands `before` inside it (e.g. start a server)."""
    to_r, to_w = os.pipe()
    from_r, from_w = os.pipe()
    profile = tempfile.mkdtemp(prefix="ingestd-chromium-")
    launch = " ".join(
        [shlex.quote(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", f"3<&{to_r} 4>&{from_w}"]
    )
    # The commands `before` must not hold the DevTools pipe: a server they leave running
    # would keep its write end open, and the reader would wait for an end of file.
    unpiped = [f"{{ {command}\n}} {to_r}<&- {from_w}>&-" for command in before]
    script = "\n".join(["set -e", *(["ip link set lo up"] if netns else []), *unpiped])
    script += f"\nexec {launch} about:blank >{profile}/chromium.log 2>&1\n"
    shell = ["bash", "-c", script]  # dash cannot redirect from fds above 9
    args = ["unshare", "--net", *shell] if netns else shell
    proc = subprocess.Popen(args, pass_fds=(to_r, from_w), start_new_session=True)
    os.close(to_r)
    os.close(from_w)
    browser = Browser(proc, to_w, from_r)
    browser.reader = asyncio.create_task(browser.read())
    try:
        await browser.send("Target.setDiscoverTargets", discover=False)
        yield browser
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(browser.send("Browser.close"), 5)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(to_w)
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await asyncio.wait_for(browser.reader, 5)
        os.close(from_r)
        shutil.rmtree(profile, ignore_errors=True)
