"""Dead letters: filter by destination, event type and time; select some or every match;
replay or purge after a page that shows how many the action will touch."""

from __future__ import annotations

import urllib.parse
from datetime import datetime

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ingestd.api.console.events import console_time
from ingestd.api.console.session import Session
from ingestd.api.console.web import (
    BASE,
    COUNT_CAP,
    TYPE_COUNT_CAP,
    Denied,
    Form,
    Web,
    first,
    redirect,
)
from ingestd.errors import IngestdError, InvalidEvent
from ingestd.store.protocol import DeadLetterQuery

PAGE = 50
EVERYTHING = 1_000_000_000
FILTERS = ("destination", "event_type", "since", "until")
OPERATIONS = {"replay": "Replay", "purge": "Purge"}


def instant(text: str, field: str) -> float | None:
    value = console_time(text, field)
    return datetime.fromisoformat(value).timestamp() if value else None


def query_of(
    values: dict[str, str],
    tenant: str,
    *,
    ids: tuple[str, ...] | None = None,
    limit: int,
    after: int = 0,
) -> DeadLetterQuery:
    try:
        return DeadLetterQuery(
            tenant_id=tenant,
            ids=ids,
            destination=values.get("destination") or None,
            event_type=values.get("event_type") or None,
            since=instant(values.get("since", ""), "since"),
            until=instant(values.get("until", ""), "until"),
            after=after,
            limit=limit,
        )
    except InvalidEvent as exc:
        raise Denied(422, "invalid-query", str(exc)) from None


async def listing(web: Web, request: Request, session: Session) -> Response:
    values = {k: request.query_params.get(k, "").strip() for k in FILTERS}
    cursor = request.query_params.get("cursor", "")
    if cursor and not (cursor.isascii() and cursor.isdigit() and len(cursor) < 19):
        raise Denied(400, "invalid-cursor", "that page link is not valid")
    query = query_of(values, session.principal.tenant, limit=PAGE, after=int(cursor or 0))
    page = await web.store.dead_letters(query)
    more = None
    if page.next_after is not None:
        more = urllib.parse.urlencode(
            {**{k: v for k, v in values.items() if v}, "cursor": str(page.next_after)}
        )
    return web.render(
        request,
        session,
        "dead.html",
        filters=values,
        items=page.items,
        more=more,
        first_page=not cursor,
        notice=request.query_params.get("notice"),
    )


def selection(form: Form, tenant: str) -> tuple[dict[str, str], DeadLetterQuery, bool]:
    """The filters, the query an action runs, and whether it is every match."""
    values = {k: first(form, k) for k in FILTERS}
    everything = first(form, "all_matching") == "yes"
    ids = None if everything else tuple(i for i in form.get("ids", []) if i)
    if ids == ():
        raise Denied(422, "empty-selection", "select dead letters, or every one that matches")
    return values, query_of(values, tenant, ids=ids, limit=EVERYTHING), everything


async def confirm(web: Web, request: Request, session: Session, form: Form) -> Response:
    operation = first(form, "operation")
    if operation not in OPERATIONS:
        raise Denied(422, "invalid-operation", "replay or purge")
    values, query, everything = selection(form, session.principal.tenant)
    cap = TYPE_COUNT_CAP if query.event_type else COUNT_CAP
    count = await web.store.count_dead(msgspec.structs.replace(query, limit=cap + 1))
    return web.render(
        request,
        session,
        "dead_confirm.html",
        operation=operation,
        label=OPERATIONS[operation],
        count=count,
        cap=cap,
        filters=values,
        everything=everything,
        ids=list(query.ids or ()),
    )


async def apply(web: Web, request: Request, session: Session, form: Form) -> Response:
    operation = first(form, "operation")
    if operation not in OPERATIONS:
        raise Denied(422, "invalid-operation", "replay or purge")
    values, query, _ = selection(form, session.principal.tenant)
    try:
        if operation == "replay":
            done = await web.admin.replay(query)
            notice = f"replayed {done}"
        else:
            done = await web.admin.purge(query)
            notice = f"purged {done}"
    except IngestdError as exc:  # e.g. selected ids replayed meanwhile from another tab
        raise Denied(409, "stale-selection", f"{exc}; nothing was {operation}d") from None
    back = {k: v for k, v in values.items() if v}
    return redirect(f"{BASE}/dead?" + urllib.parse.urlencode({**back, "notice": notice}))
