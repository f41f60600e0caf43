"""Dead letters: list (filter by destination, event type, time), replay, delete.

The admin service (admin.py) does the work; its errors become problems through the app's
mapping (dead-letter-not-found 404, invalid-selection 422).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response

from ingestd.admin import dead_letter_filter, id_list, selection
from ingestd.api.auth import tenant_of
from ingestd.api.responses import error_response, problem_response, runtime_of
from ingestd.api.views import event_body, rfc3339
from ingestd.errors import InvalidCursor, InvalidSelection
from ingestd.store.cursors import decode_cursor
from ingestd.store.protocol import DeadLetter

router = APIRouter(tags=["dead letters"])


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
    cursor: Annotated[
        str | None,
        # Documented, not enforced by the framework: a bad cursor is our 400, not a 422.
        Query(
            description="next_cursor of the previous page",
            json_schema_extra={"pattern": "^[0-9]{1,18}$"},
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    try:
        (after,) = decode_cursor(cursor, ROW_ID) if cursor else (0,)
        query = dead_letter_filter(
            tenant_of(request.scope),
            destination=destination,
            event_type=event_type,
            since=since,
            until=until,
            after=after,
            limit=limit,
        )
    except InvalidSelection as exc:
        return error_response(exc, "invalid-query")
    except InvalidCursor as exc:
        return problem_response(400, "invalid-cursor", str(exc), field="cursor")
    page = await runtime_of(request).admin.dead_letters(query)
    return JSONResponse(
        {
            "dead_letters": [dead_letter_body(i) for i in page.items],
            "next_cursor": str(page.next_after) if page.next_after is not None else None,
        }
    )


ROW_ID = 2**63
"""Dead-letter cursors are a delivery row id: a signed 64-bit integer."""


@router.get("/dlq/{delivery_id}", summary="One dead delivery")
async def show_dead(delivery_id: str, request: Request) -> Response:
    item = await runtime_of(request).admin.dead_letter(tenant_of(request.scope), delivery_id)
    return JSONResponse(dead_letter_body(item))


@router.post(
    "/dlq/replay",
    summary="Replay dead deliveries (same webhook-id, attempts reset) by ids, event_ids or filter",
)
async def replay(request: Request, doc: Annotated[dict[str, Any], Body()]) -> Response:
    tenant = tenant_of(request.scope)
    admin = runtime_of(request).admin
    ids = id_list(doc.get("ids"), "ids", "dead-letter ids (msg_...)")
    event_ids = id_list(doc.get("event_ids"), "event_ids", "event ids")
    if event_ids is not None:
        if "ids" in doc:
            raise InvalidSelection("give ids or event_ids, not both", field="event_ids")
        ids = await admin.dead_letters_of_events(tenant, event_ids)
    for key in ("destination", "event_type"):
        if doc.get(key) is not None and not isinstance(doc[key], str):
            raise InvalidSelection(f"{key}: a string", field=key)
    query = selection(
        tenant,
        ids=ids,
        destination=doc.get("destination"),
        event_type=doc.get("event_type"),
        since=doc.get("since"),
        until=doc.get("until"),
        everything=doc.get("all") is True,
    )
    field = "event_ids" if event_ids is not None else "ids"
    return JSONResponse({"replayed": await admin.replay(query, field=field)})


@router.delete("/dlq/{delivery_id}", status_code=204, summary="Delete one dead delivery")
async def delete_dead(delivery_id: str, request: Request) -> Response:
    await runtime_of(request).admin.purge_one(tenant_of(request.scope), delivery_id)
    return Response(status_code=204)
