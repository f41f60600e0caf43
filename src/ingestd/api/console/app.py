"""The console as an ASGI app mounted at /console: sign-in, sign-out, static assets, and
every page behind the session check (reads) or the session + CSRF + admin check (actions)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.staticfiles import StaticFiles

from ingestd.api.auth import Keyring
from ingestd.api.console import dead, destinations, events, inbox, keys, overview
from ingestd.api.console.session import COOKIE, Sessions, expired_cookie
from ingestd.api.console.web import (
    BASE,
    PACKAGE,
    Action,
    Denied,
    Page,
    Reload,
    Web,
    finish,
    first,
    form_of,
    redirect,
    same_origin,
    secure,
)
from ingestd.api.problems import answer_for
from ingestd.errors import StoreUnavailable
from ingestd.runtime import Runtime

log = logging.getLogger("ingestd.console")
Endpoint = Callable[[Request], Any]


def page(web: Web, fn: Page, *, operator: bool = False) -> Endpoint:
    """A read: a valid session (else the sign-in page), the operator's tenant if asked."""

    async def endpoint(request: Request) -> Response:
        try:
            session, cookie = web.session_of(request)
            if session is None:
                return finish(redirect(f"{BASE}/sign-in?next={request.url.path}"), request)
            if operator and not session.is_operator:
                raise Denied(403, "forbidden", "destinations are the operator's (default tenant)")
            return finish(await fn(web, request, session), request, cookie)
        except Denied as exc:
            return web.denied(request, exc)
        except StoreUnavailable as exc:
            return web.denied(request, Denied(503, answer_for(exc)[1], str(exc)))

    return endpoint


def action(web: Web, fn: Action, *, operator: bool = False) -> Endpoint:
    """A change: same origin, a valid session, its CSRF token, and an admin key."""

    async def endpoint(request: Request) -> Response:
        try:
            if not same_origin(request):
                raise Denied(403, "cross-origin", "console actions come from the console's pages")
            session, cookie = web.session_of(request)
            if session is None:
                raise Denied(401, "unauthorized", "sign in to the console first")
            form = await form_of(request)
            if not session.csrf_ok(first(form, "csrf") or None):
                raise Denied(403, "csrf", "the form's CSRF token is missing or not this session's")
            if not session.can_act:
                raise Denied(403, "forbidden", f"key {session.principal.key_id!r} may only read")
            if operator and not session.is_operator:
                raise Denied(403, "forbidden", "destinations are the operator's (default tenant)")
            log.info(
                "console %s by key %s (tenant %s)",
                request.url.path,
                session.principal.key_id,
                session.principal.tenant,
            )
            return finish(await fn(web, request, session, form), request, cookie)
        except Denied as exc:
            return web.denied(request, exc)
        except StoreUnavailable as exc:
            return web.denied(request, Denied(503, answer_for(exc)[1], str(exc)))

    return endpoint


def sign_in_page(web: Web) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            session, cookie = web.session_of(request)
        except Denied as exc:
            return web.denied(request, exc)
        if session is not None:
            return finish(redirect(BASE), request, cookie)
        target = request.query_params.get("next", "")
        page = web.render(request, None, "sign_in.html", error=None, next=target)
        return finish(page, request)

    return endpoint


def sign_in(web: Web) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            if not same_origin(request):
                raise Denied(403, "cross-origin", "sign in from the console's own page")
            form = await form_of(request)
        except Denied as exc:
            return web.denied(request, exc)
        signed = web.sessions.sign_in(first(form, "key"), time.time())
        if signed is None or not signed[0].can_read:
            error = (
                "That key is not valid here."
                if signed is None
                else "That key may only ingest: the console needs a read or admin key."
            )
            page = web.render(
                request, None, "sign_in.html", 401, error=error, next=first(form, "next")
            )
            return finish(page, request)
        target = first(form, "next")
        if not target.startswith(BASE) or target.startswith("//"):
            target = BASE
        log.info("console sign-in by key %s", signed[0].key_id)
        return finish(redirect(target), request, signed[1])

    return endpoint


def sign_out(web: Web) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        # Without a CSRF check a foreign page could only sign the visitor out: harmless,
        # but the form carries the token anyway and the origin is checked.
        if not same_origin(request):
            return web.denied(request, Denied(403, "cross-origin", "sign out from the console"))
        response = redirect(f"{BASE}/sign-in")
        response.headers.append("set-cookie", expired_cookie(secure(request)))
        return finish(response, request)

    return endpoint


def routes(web: Web) -> list[BaseRoute]:
    def get(path: str, fn: Page, **kw: Any) -> Route:
        return Route(BASE + path, page(web, fn, **kw), methods=["GET", "HEAD"])

    def post(path: str, fn: Action, **kw: Any) -> Route:
        return Route(BASE + path, action(web, fn, **kw), methods=["POST"])

    return [
        Route(BASE + "/sign-in", sign_in_page(web), methods=["GET"]),
        Route(BASE + "/sign-in", sign_in(web), methods=["POST"]),
        Route(BASE + "/sign-out", sign_out(web), methods=["POST"]),
        get("", overview.page),
        get("/", overview.page),
        get("/live/overview", overview.live),
        get("/events", events.listing),
        get("/events/{event_id:path}", events.detail),
        get("/destinations", destinations.listing, operator=True),
        get("/destinations/new", destinations.new, operator=True),
        get("/destinations/{name}", destinations.detail, operator=True),
        get("/destinations/{name}/edit", destinations.edit, operator=True),
        post("/destinations", destinations.create, operator=True),
        post("/destinations/{name}", destinations.update, operator=True),
        post("/destinations/{name}/enabled", destinations.set_enabled, operator=True),
        post("/destinations/{name}/rotate", destinations.rotate, operator=True),
        post("/destinations/{name}/end-overlap", destinations.end_overlap, operator=True),
        post("/destinations/{name}/test", destinations.send_test, operator=True),
        get("/dead", dead.listing),
        post("/dead/confirm", dead.confirm),
        post("/dead/apply", dead.apply),
        get("/inbox", inbox.listing),
        get("/inbox/{destination}", inbox.peek),
        get("/keys", keys.listing),
        post("/keys", keys.create),
        post("/keys/{key_id}/revoke", keys.revoke),
    ]


class Console:
    """The /console ASGI app of one API process."""

    def __init__(
        self, runtime: Runtime, keyring: Keyring | None, reload_keys: Reload | None = None
    ) -> None:
        sessions = Sessions(keyring, runtime.settings.console_secret)
        self.web = Web(runtime, sessions, reload_keys)
        static = StaticFiles(directory=str(PACKAGE.joinpath("static")))
        self.app = Starlette(routes=routes(self.web))
        self.app.mount(BASE + "/static", static, name="static")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


__all__ = ["COOKIE", "Console"]
