"""Dead letters: list (filter by destination, event type, time), replay, delete."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response

from ingestd.api.auth import tenant_of
from ingestd.api.routes import problem_response, runtime_of
from ingestd.api.views import event_body, rfc3339
from ingestd.store.protocol import DeadLetter, DeadLetterQuery

router = APIRouter(tags=["dead letters"])
EVERYTHING = 1_000_000_000


class BadQuery(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def timestamp(value: Any, field: str) -> float | None:
    """Unix seconds from an RFC 3339 string (or a number)."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                return parsed.timestamp()
    raise BadQuery(field, f"{field}: an RFC 3339 time with an offset, e.g. 2026-01-31T12:00:00Z")


def dead_letter_body(item: DeadLetter) -> dict[str, Any]:
    d = item.delivery
    return {
        "id": d.delivery_id,
        "destination": d.destination,
        "event_type": item.event.type,
        "attempts": d.attempts,
        "last_status_code": d.last_status,
        "last_error": d.last_error,
        "died_at": rfc3339(d.finished_at),
        "created_at": rfc3339(d.created_at),
        "event": event_body(item.event),
    }


@router.get("/dlq", summary="Dead deliveries, oldest first, cursor-paginated")
async def list_dead(
    request: Request,
    destination: str | None = None,
    event_type: str | None = None,
    since: Annotated[str | None, Query(description="died at ≥ since (RFC 3339)")] = None,
    until: Annotated[str | None, Query(description="died at < until (RFC 3339)")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    try:
        query = DeadLetterQuery(
            tenant_id=tenant_of(request.scope),
            destination=destination,
            event_type=event_type,
            since=timestamp(since, "since"),
            until=timestamp(until, "until"),
            after=int(cursor) if cursor else 0,
            limit=limit,
        )
    except BadQuery as exc:
        return problem_response(422, "invalid-query", str(exc), field=exc.field)
    except ValueError:
        return problem_response(400, "invalid-cursor", "cursor must be a next_cursor value")
    page = await runtime_of(request).store.dead_letters(query)
    return JSONResponse(
        {
            "dead_letters": [dead_letter_body(i) for i in page.items],
            "next_cursor": str(page.next_after) if page.next_after is not None else None,
        }
    )


@router.get("/dlq/{delivery_id}", summary="One dead delivery")
async def show_dead(delivery_id: str, request: Request) -> Response:
    query = DeadLetterQuery(tenant_id=tenant_of(request.scope), ids=(delivery_id,), limit=1)
    page = await runtime_of(request).store.dead_letters(query)
    if not page.items:
        return problem_response(404, "dead-letter-not-found", f"no dead delivery {delivery_id!r}")
    return JSONResponse(dead_letter_body(page.items[0]))


def query_from(doc: dict[str, Any], tenant: str) -> DeadLetterQuery:
    """A replay or purge selection: `ids`, or filters, or `all: true`."""
    ids = doc.get("ids")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids)):
        raise BadQuery("ids", "ids: a list of dead-letter ids (msg_...)")
    filters = {k: doc.get(k) for k in ("destination", "event_type", "since", "until")}
    if ids is None and not any(filters.values()) and doc.get("all") is not True:
        raise BadQuery("ids", "give ids, a filter (destination, event_type, since, until) or all")
    for key in ("destination", "event_type"):
        if filters[key] is not None and not isinstance(filters[key], str):
            raise BadQuery(key, f"{key}: a string")
    return DeadLetterQuery(
        tenant_id=tenant,
        ids=tuple(ids) if ids is not None else None,
        destination=filters["destination"],
        event_type=filters["event_type"],
        since=timestamp(filters["since"], "since"),
        until=timestamp(filters["until"], "until"),
        limit=EVERYTHING,
    )


@router.post(
    "/dlq/replay",
    summary="Replay dead deliveries (same webhook-id, attempts reset) by ids or filter",
)
async def replay(request: Request, doc: Annotated[dict[str, Any], Body()]) -> Response:
    try:
        query = query_from(doc, tenant_of(request.scope))
    except BadQuery as exc:
        return problem_response(422, "invalid-selection", str(exc), field=exc.field)
    count = await runtime_of(request).store.replay_dead(query, time.time())
    return JSONResponse({"replayed": count})


@router.delete("/dlq/{delivery_id}", status_code=204, summary="Delete one dead delivery")
async def delete_dead(delivery_id: str, request: Request) -> Response:
    query = DeadLetterQuery(tenant_id=tenant_of(request.scope), ids=(delivery_id,), limit=1)
    if not await runtime_of(request).store.purge_dead(query):
        return problem_response(404, "dead-letter-not-found", f"no dead delivery {delivery_id!r}")
    return Response(status_code=204)
