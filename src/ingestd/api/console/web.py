"""The console's request plumbing: who is asking (session), what they may do (CSRF, admin),
how pages are rendered (Jinja2, autoescaped) and the headers every answer carries."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import msgspec
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from ingestd.admin import Admin
from ingestd.api.console.session import (
    Session,
    Sessions,
    cookie_header,
    is_loopback,
)
from ingestd.api.problems import problem
from ingestd.api.views import rfc3339
from ingestd.runtime import Runtime

BASE = "/console"
FORM_LIMIT = 256 * 1024
"""A console form is a few fields (a destination's options at most): refuse more."""
SECURITY_HEADERS = {
    # Nothing but our own script and style; no frames, no form posts elsewhere.
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",  # no-referrer would make form posts send Origin: null
    "cache-control": "no-store",
}
PACKAGE = resources.files("ingestd.api.console")


def ago(ts: float | None) -> str:
    """'12 s ago', '3 min ago': the overview reads at a glance."""
    if ts is None:
        return "—"
    delta = time.time() - ts
    if delta < 0:
        return f"in {duration(-delta)}"
    return f"{duration(delta)} ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


COUNT_CAP = 10_000
"""Dead letters are counted up to here on a page (bounded time with 100,000 of them)."""


TYPE_COUNT_CAP = 1_000
"""With an event-type filter each dead letter's event is looked up: a lower bound."""


def capped(count: int, cap: int = COUNT_CAP) -> str:
    return f"more than {cap:,}" if count > cap else f"{count:,}"


EXCERPT = 600


def clock(ts: float) -> str:
    """`11:35:42.355Z`: an attempt's time of day (the full time is in its datetime)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S.%f")[:-3] + "Z"


def excerpt(body: bytes | str) -> str:
    """The start of a response body as text (what an attempt's log kept of it)."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    return text if len(text) <= EXCERPT else text[:EXCERPT] + " …"


def pretty_json(value: Any) -> str:
    return msgspec.json.format(msgspec.json.encode(value), indent=2).decode()


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(PACKAGE.joinpath("templates"))),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        ago=ago,
        duration=duration,
        rfc3339=rfc3339,
        pretty_json=pretty_json,
        capped=capped,
        excerpt=excerpt,
        clock=clock,
    )
    env.globals["base"] = BASE
    return env


class Denied(Exception):
    """A request the console refuses: answered as an HTML page or problem+json."""

    def __init__(self, status: int, slug: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail


class Web:
    """Shared by every page: the runtime, the sessions, the templates."""

    def __init__(
        self, runtime: Runtime, sessions: Sessions, reload_keys: Reload | None = None
    ) -> None:
        self.runtime = runtime
        self.sessions = sessions
        self.env = environment()
        self._reload_keys = reload_keys

    async def reload_keys(self) -> None:
        """After a key is made or revoked: this process's keyring at once (the KeyWatcher
        of every other process within about a second)."""
        if self._reload_keys is not None:
            await self._reload_keys()

    @property
    def store(self) -> Any:
        return self.runtime.store

    @property
    def admin(self) -> Admin:
        """The shared admin service (destinations, dead letters)."""
        return self.runtime.admin

    def session_of(self, request: Request) -> tuple[Session | None, str | None]:
        """The request's session, and a new cookie value to set (anonymous or renewed)."""
        now = time.time()
        if self.sessions.open:
            exposed = self.runtime.settings.allow_unauthenticated  # the API's own rule
            if not exposed and not is_loopback(request.scope.get("client")):
                raise Denied(
                    403,
                    "console-loopback-only",
                    "no API key is configured, so the console answers loopback clients "
                    "only (as the API does); configure INGESTD_API_KEYS to sign in from "
                    "elsewhere",
                )
            session = self.sessions.check(request.cookies, now)
            if session is None:
                return self.sessions.anonymous(now)
            return session, None
        session = self.sessions.check(request.cookies, now)
        if session is None:
            return None, None
        renewed = session.renewed(now)
        if renewed is not None:
            return Session(session.principal, renewed, session.mac_key), (
                self.sessions.cookie_value(renewed, session.mac_key)
            )
        return session, None

    def render(
        self,
        request: Request,
        session: Session | None,
        template: str,
        status: int = 200,
        **ctx: Any,
    ) -> HTMLResponse:
        html = self.env.get_template(template).render(
            session=session,
            csrf=session.csrf if session else "",
            path=request.url.path,
            **ctx,
        )
        return HTMLResponse(html, status)

    def denied(self, request: Request, exc: Denied) -> Response:
        if "text/html" in request.headers.get("accept", ""):
            response: Response = self.render(
                request, None, "error.html", exc.status, status_code=exc.status, detail=exc.detail
            )
        else:
            response = Response(
                msgspec.json.encode(problem(exc.status, exc.slug, exc.detail)),
                exc.status,
                media_type="application/problem+json",
            )
        return finish(response, request)


def secure(request: Request) -> bool:
    """Behind a TLS-terminating proxy the scheme arrives as X-Forwarded-Proto."""
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"


def finish(response: Response, request: Request, cookie: str | None = None) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if cookie is not None:
        response.headers.append("set-cookie", cookie_header(cookie, secure=secure(request)))
    return response


def redirect(to: str) -> RedirectResponse:
    return RedirectResponse(to, status_code=303)


def same_origin(request: Request) -> bool:
    """A browser names the page a POST came from; refuse any other origin (on top of the
    SameSite=Strict cookie and the CSRF token)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return urllib.parse.urlsplit(origin).netloc == host


async def form_of(request: Request) -> Form:
    """An application/x-www-form-urlencoded body (the console's forms use nothing else)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if kind != "application/x-www-form-urlencoded":
        raise Denied(415, "unsupported-media-type", "console forms are url-encoded")
    size = 0
    chunks = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > FORM_LIMIT:
            raise Denied(413, "form-too-large", f"a console form is at most {FORM_LIMIT} bytes")
        chunks.append(chunk)
    text = b"".join(chunks).decode("utf-8", errors="replace")
    return urllib.parse.parse_qs(text, keep_blank_values=True, max_num_fields=2000)


Form = dict[str, list[str]]
Reload = Callable[[], Awaitable[None]]
Page = Callable[[Web, Request, Session], Awaitable[Response]]
Action = Callable[[Web, Request, Session, Form], Awaitable[Response]]


def first(form: Form, name: str, default: str = "") -> str:
    values = form.get(name)
    return values[0].strip() if values else default
