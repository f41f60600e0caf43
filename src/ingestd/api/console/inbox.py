"""Inbox: the pull destinations and, for each, the deliveries waiting to be pulled, peeked
at without leasing them (a consumer's next GET /inbox still gets every one)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ingestd.api.console.session import Session
from ingestd.api.console.web import Denied, Web

PEEK = 50


def inboxes(web: Web) -> list[str]:
    return sorted(c.name for c in web.runtime.directory.configs() if c.kind == "inbox")


async def listing(web: Web, request: Request, session: Session) -> Response:
    names = inboxes(web)
    backlog = {
        b.destination: b
        for b in await web.store.destination_backlog(session.principal.tenant, dead_cap=0)
        if b.destination in names
    }
    return web.render(request, session, "inbox.html", names=names, backlog=backlog)


async def peek(web: Web, request: Request, session: Session) -> Response:
    name = request.path_params["destination"]
    if name not in inboxes(web):
        raise Denied(404, "inbox-not-found", f"no destination of kind 'inbox' named {name!r}")
    waiting = await web.store.peek_inbox(session.principal.tenant, name, PEEK)
    return web.render(request, session, "inbox_peek.html", name=name, waiting=waiting, limit=PEEK)
