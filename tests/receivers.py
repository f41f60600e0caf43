"""A real loopback webhook receiver for tests (HTTP, or HTTPS with a given context): told
to answer a status, hang, or send Retry-After, per path; it records every request it got."""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from support import ServerProcess, free_port


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    status: int


@dataclass
class Behaviour:
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


class Receiver:
    """`await Receiver().start()`; `url(path)`; `behave(path, status=..., delay=...)`."""

    def __init__(self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.tls = tls
        self.host = host
        self.requests: list[Received] = []
        self.behaviours: dict[str, Behaviour] = {}
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, ssl_context=self.tls)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str = "/hook") -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}:{self.port}{path}"

    def behave(
        self, path: str = "/hook", status: int = 200, delay: float = 0.0, **headers: str
    ) -> None:
        self.behaviours[path] = Behaviour(
            status, delay, {k.replace("_", "-"): v for k, v in headers.items()}
        )

    def received(self, path: str | None = None, status: int | None = None) -> list[Received]:
        return [
            r
            for r in self.requests
            if (path is None or r.path == path) and (status is None or r.status == status)
        ]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        b = self.behaviours.get(request.path, Behaviour())
        self.requests.append(
            Received(request.path, dict(request.headers), body, time.time(), b.status)
        )
        self.arrived.set()
        if b.delay:
            await asyncio.sleep(b.delay)
        return web.Response(status=b.status, headers=b.headers, text="ok")


async def start_ingestd(
    tmp_path: Path, toml: str, *, command: str = "serve", **env: str
) -> ServerProcess:
    """A real `ingestd` process with this TOML as INGESTD_CONFIG and loopback allowed."""
    config = tmp_path / "ingestd.toml"
    config.write_text(toml)
    proc = ServerProcess(
        tmp_path,
        port=free_port(),
        command=command,
        env={
            "INGESTD_CONFIG": str(config),
            "INGESTD_WEBHOOK_ALLOW_NETS": '["127.0.0.0/8"]',
            "INGESTD_LOG_LEVEL": "warning",
            **env,
        },
    )
    await proc.start()
    return proc
