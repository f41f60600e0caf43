"""The worker process's own HTTP port: GET /metrics, /health and /ready.

`ingestd worker` serves no API, but it must be scrapable (an `up{job="ingestd-worker"}`
alert) and probeable (a liveness and a readiness probe). This is a small aiohttp server
in the worker's event loop; it answers only these three GETs.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from aiohttp import web

from ingestd import __version__
from ingestd.api.problems import CONTENT_TYPE as PROBLEM_CT
from ingestd.api.problems import problem_bytes
from ingestd.errors import StoreUnavailable
from ingestd.obs import scrape
from ingestd.store.protocol import Store

DEFAULT_PORT = 9464
"""`ingestd worker --metrics-port`'s default (the port OpenTelemetry's Prometheus exporter
uses by convention; the API keeps 8000). 0 turns the port off."""


def problem_response(status: int, slug: str, detail: str) -> web.Response:
    headers = {"Retry-After": "1"} if status == 503 else None
    return web.Response(
        status=status,
        body=problem_bytes(status, slug, detail),
        content_type=PROBLEM_CT.decode(),
        headers=headers,
    )


class WorkerPort:
    """Serves the worker's probes and metrics until `stop()`."""

    def __init__(
        self,
        store: Store,
        alive: Callable[[], str | None],
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
    ) -> None:
        self._store = store
        self._alive = alive
        """None while the worker works; otherwise why it does not (liveness fails)."""
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/health", self.health)
        app.router.add_get("/ready", self.ready)
        return app

    async def start(self) -> None:
        # access_log=None: a probe every few seconds is not worth a log line.
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def metrics(self, request: web.Request) -> web.Response:
        body = await scrape.exposition(self._store)
        return web.Response(body=body, headers={"Content-Type": scrape.CONTENT_TYPE})

    async def health(self, request: web.Request) -> web.Response:
        """Liveness: the claim loop runs (no store call: a store outage is readiness's)."""
        reason = self._alive()
        if reason is not None:
            return problem_response(503, "worker-not-running", reason)
        return web.json_response({"status": "ok", "version": __version__, "pid": os.getpid()})

    async def ready(self, request: web.Request) -> web.Response:
        try:
            await self._store.ping()
        except StoreUnavailable as exc:
            return problem_response(503, "store-unavailable", str(exc))
        return web.json_response({"status": "ready"})
