"""The ASGI application: the fast ingest handler in front of the FastAPI app, one lifespan."""

from __future__ import annotations

import logging
import time

import msgspec

from ingestd.api.apidocs import ASSET_PATHS, DOCS_PATH
from ingestd.api.auth import PRINCIPAL_KEY, Keyring, is_read, operator_only
from ingestd.api.bodies import BODY_METHODS, buffered
from ingestd.api.console import Console
from ingestd.api.ingest import (
    FAST_PATHS,
    IngestHandler,
    Message,
    Receive,
    Reply,
    Scope,
    Send,
    forbidden_reply,
    problem_reply,
    unauthorized_reply,
)
from ingestd.api.keywatch import KeyWatcher
from ingestd.api.routes import ANSWERED_KEY, create_framework_app
from ingestd.bench.looplag import LoopLag
from ingestd.config import Settings, load_settings
from ingestd.limits.policy import RateLimits
from ingestd.model import DEFAULT_TENANT
from ingestd.obs import logs, metrics
from ingestd.runtime import Role, Runtime

log = logging.getLogger("ingestd")


NUL_REPLY = problem_reply(
    400,
    "nul-character",
    "the path or query string holds a NUL character (%00), which no name, id or filter may contain",
)


def has_nul(scope: Scope) -> bool:
    """NUL in the path or query: no stored text can hold it (PostgreSQL refuses it)."""
    query: bytes = scope.get("query_string", b"")
    return "\x00" in scope["path"] or b"%00" in query or b"\x00" in query


class IngestdApp:
    """Dispatch by path: ingest paths → IngestHandler, the rest → FastAPI."""

    def __init__(self, settings: Settings, role: Role = "serve") -> None:
        self.runtime = Runtime(settings, role)
        self.keyring = Keyring.from_settings(settings)
        self.keys = KeyWatcher(self.runtime.store, self.keyring)
        self.limits = RateLimits.from_settings(settings)
        self.open_paths = frozenset(settings.auth_open_paths)
        if DOCS_PATH in self.open_paths:
            self.open_paths |= ASSET_PATHS
        self.ingest = IngestHandler(self.runtime, self.keyring, self.limits)
        self.framework = create_framework_app(self.runtime)
        self.framework.state.keys = self.keys  # POST/DELETE /keys reload at once
        self.noop = settings.bench_noop
        self.admin_body_limit = settings.max_admin_body_bytes
        self.loop_lag = LoopLag() if settings.bench_noop else None
        """The benchmarks' 1 ms ticker (GET /_bench/loop-lag), only with INGESTD_BENCH_NOOP."""
        self.console = (
            Console(self.runtime, self.keyring, self.keys.refresh) if settings.console else None
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and scope["path"] in FAST_PATHS:
            await self.ingest(scope, receive, send)
        elif kind == "http" and scope["path"] == NOOP_PATH and self.noop:
            await noop(receive, send)
        elif kind == "http" and scope["path"] == LOOP_LAG_PATH and self.loop_lag is not None:
            reset = b"reset=1" in scope.get("query_string", b"")
            body = msgspec.json.encode(self.loop_lag.snapshot(reset))
            await IngestHandler.send_reply(send, Reply(200, body))
        elif kind == "lifespan":
            await self.lifespan(receive, send)
        elif kind == "http":
            await self.timed(scope, receive, send)
        else:
            await self.framework(scope, receive, send)

    async def timed(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every request but ingest's fast path, into the request-duration histogram by the
        route template it matched (`unrouted` for refusals before routing and 404s)."""
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.routed(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unrouted"
            metrics.observe_request(template, status, time.perf_counter() - started)

    async def routed(self, scope: Scope, receive: Receive, send: Send) -> None:
        if has_nul(scope):
            await IngestHandler.send_reply(send, NUL_REPLY)
            return
        if self.console is not None and is_console(scope):
            await self.console(scope, receive, send)  # signs its visitors in itself
            return
        if self.keyring.active and scope["path"] not in self.open_paths:
            refusal = self.authorize(scope)
            if refusal is not None:
                await IngestHandler.send_reply(send, refusal)
                return
        if scope["method"] in BODY_METHODS:
            checked = await buffered(scope, receive, self.admin_body_limit)
            if checked is None:
                return  # cut short: nobody to answer, nothing done
            if isinstance(checked, Reply):
                await IngestHandler.send_reply(send, checked)
                return
            receive = checked
        try:
            await self.framework(scope, receive, send)
        except Exception:
            # Starlette re-raises after its 500 handler answered and logged it: stop it
            # here so the server keeps the connection and does not log it twice.
            if not scope.get(ANSWERED_KEY):
                raise

    def authorize(self, scope: Scope) -> Reply | None:
        """Everything but the open paths needs a key. Ingest's fast path checks its own; an
        event's status (the `status_url` of a 202) takes the ingest scope too; looking
        (GET of status, events, dead letters, deliveries, destinations, an inbox's waiting
        events) takes `read`; everything else is administration: `admin` (which reads too)."""
        headers = dict(scope["headers"])
        principal = self.keyring.authenticate(headers)
        if principal is None:
            return unauthorized_reply(headers)
        allowed = (
            principal.is_admin
            or (principal.can_read and is_read(scope))
            or (principal.can_ingest and is_status_read(scope))
        )
        if not allowed:
            needed = "read" if is_read(scope) else "admin"
            return forbidden_reply(
                f"API key {principal.key_id!r} lacks the {needed} scope "
                f"{scope['method']} {scope['path']} needs",
                scope=needed,
            )
        if operator_only(scope["path"]) and principal.tenant != DEFAULT_TENANT:
            return forbidden_reply(
                "destinations are shared by every tenant: only a key of the "
                f"{DEFAULT_TENANT!r} tenant sees or manages them"
            )
        scope[PRINCIPAL_KEY] = principal  # every lookup is scoped by its tenant
        return None

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.runtime.start()
                    if self.loop_lag is not None:
                        self.loop_lag.start()
                    await self.keys.start()  # the stored keys, before the first request
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.loop_lag is not None:
                    await self.loop_lag.stop()
                await self.keys.stop()
                await self.runtime.stop()
                if self.limits is not None:
                    await self.limits.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def is_status_read(scope: Scope) -> bool:
    """`GET /ingest/{id}/status`: the status_url of a 202."""
    parts = scope["path"].split("/")
    return (
        scope["method"] in ("GET", "HEAD")
        and len(parts) == 4
        and parts[:2] == ["", "ingest"]
        and parts[2] != ""
        and parts[3] == "status"
    )


def is_console(scope: Scope) -> bool:
    path: str = scope["path"]
    return path == "/console" or path.startswith("/console/")


NOOP_PATH = "/_bench/noop"
LOOP_LAG_PATH = "/_bench/loop-lag"


async def noop(receive: Receive, send: Send) -> None:
    """The benchmark ceiling: read the body, answer 202, touch nothing (INGESTD_BENCH_NOOP)."""
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    body = b'{"status":"accepted"}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"21")]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(role: Role = "serve") -> IngestdApp:
    """Factory for `uvicorn --factory` and multi-process `ingestd api --workers N`."""
    settings = load_settings()
    logs.configure(settings.log_level, settings.log_format)  # a fresh worker process
    return IngestdApp(settings, role)


def create_api_app() -> IngestdApp:
    return create_app("api")
