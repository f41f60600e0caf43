"""Events: search by id, source, type and time (newest first, cursor paging on the existing
indexes, never a count of the table), and an event's page: payload, idempotency key, trace
id, and per destination every attempt."""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ingestd.api.console.session import Session
from ingestd.api.console.web import BASE, Denied, Web, redirect
from ingestd.errors import InvalidCursor, InvalidEvent
from ingestd.ingest.envelope import parse_time
from ingestd.model import DeliveryState
from ingestd.store.protocol import EventQuery

PAGE = 50
_MINUTES = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d$")
FINISHED = (DeliveryState.SUCCEEDED, DeliveryState.DEAD)


def console_time(value: str, field: str) -> str | None:
    """RFC 3339, or `YYYY-MM-DDTHH:MM` (a datetime-local input) read as UTC."""
    if not value:
        return None
    if _MINUTES.match(value):
        value += ":00Z"
    return parse_time(value, field)


def trace_id(trace: str | None) -> str | None:
    """The trace id of a W3C traceparent (`00-<trace id>-<span id>-<flags>`)."""
    if not trace:
        return None
    parts = trace.split(" ", 1)[0].split("-")
    return parts[1] if len(parts) == 4 else None


async def listing(web: Web, request: Request, session: Session) -> Response:
    args = request.query_params
    filters = {k: args.get(k, "").strip() for k in ("id", "source", "type", "since", "until")}
    if filters["id"]:
        return redirect(f"{BASE}/events/{urllib.parse.quote(filters['id'], safe='')}")
    error = None
    events: list[Any] = []
    next_cursor = None
    try:
        query = EventQuery(
            tenant_id=session.principal.tenant,
            source=filters["source"] or None,
            type=filters["type"] or None,
            since=console_time(filters["since"], "since"),
            until=console_time(filters["until"], "until"),
            cursor=args.get("cursor") or None,
            limit=PAGE,
            newest_first=True,
        )
        page = await web.store.events(query)
        events, next_cursor = page.events, page.next_cursor
    except InvalidEvent as exc:
        error = str(exc)
    except InvalidCursor:
        error = "that page link is not valid any more: start from the newest events"
    more = None
    if next_cursor is not None:
        more = urllib.parse.urlencode(
            {**{k: v for k, v in filters.items() if v}, "cursor": next_cursor}
        )
    status = 422 if error else 200
    return web.render(
        request,
        session,
        "events.html",
        status,
        filters=filters,
        events=events,
        more=more,
        error=error,
        first_page=not args.get("cursor"),
    )


async def detail(web: Web, request: Request, session: Session) -> Response:
    event_id = request.path_params["event_id"]
    report = await web.store.status(session.principal.tenant, event_id)
    if report is None:
        raise Denied(404, "event-not-found", f"no event with id {event_id!r} in this tenant")
    key = await web.store.idempotency_key_of(report.event)
    settled = all(d.state in FINISHED for d in report.deliveries)
    live = request.query_params.get("live") == "1"
    response = web.render(
        request,
        session,
        "event_live.html" if live else "event.html",
        report=report,
        event=report.event,
        key=key,
        trace_id=trace_id(report.event.trace),
        settled=settled,
    )
    if settled:
        response.headers["x-console-settled"] = "1"  # the script stops refreshing
    return response
