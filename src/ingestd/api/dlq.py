"""Dead letters: list (filter by destination, event type, time), replay, delete."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response

from ingestd.api.auth import tenant_of
from ingestd.api.routes import problem_response, runtime_of
from ingestd.api.views import event_body, rfc3339
from ingestd.model import DeliveryState
from ingestd.store.protocol import DeadLetter, DeadLetterQuery, Store

router = APIRouter(tags=["dead letters"])
EVERYTHING = 1_000_000_000
LATEST = 253402300800.0
"""9999-12-31T24:00:00Z in Unix seconds: a time filter past it cannot be meant."""


class BadQuery(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def timestamp(value: Any, field: str) -> float | None:
    """Unix seconds from an RFC 3339 string (or a number)."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 <= value < LATEST:  # NaN fails both, 10**400 or inf the second
            raise BadQuery(field, f"{field}: Unix seconds between 0 and {LATEST:.0f}")
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                try:
                    return parsed.timestamp()
                except (OverflowError, OSError, ValueError):
                    pass
    raise BadQuery(field, f"{field}: an RFC 3339 time with an offset, e.g. 2026-01-31T12:00:00Z")


def parse_cursor(cursor: str | None) -> int:
    """A next_cursor: ASCII digits of a 63-bit row number (ValueError otherwise)."""
    if not cursor:
        return 0
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 19):
        raise ValueError(cursor)
    after = int(cursor)
    if after >= 2**63:
        raise ValueError(cursor)
    return after


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
            after=parse_cursor(cursor),
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


MAX_IDS = 1000
"""Ids (or event ids) one replay names at most; a filter selects any number."""


def id_list(doc: dict[str, Any], field: str, what: str) -> list[str] | None:
    ids = doc.get(field)
    if ids is None:
        return None
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise BadQuery(field, f"{field}: a non-empty list of {what}")
    if len(ids) > MAX_IDS:
        raise BadQuery(field, f"{field}: at most {MAX_IDS} per request (got {len(ids)})")
    return list(dict.fromkeys(ids))


def query_from(doc: dict[str, Any], tenant: str) -> DeadLetterQuery:
    """A replay or purge selection: `ids`, or filters, or `all: true`."""
    ids = id_list(doc, "ids", "dead-letter ids (msg_...)")
    filters = {k: doc.get(k) for k in ("destination", "event_type", "since", "until")}
    if ids is None and not any(filters.values()) and doc.get("all") is not True:
        raise BadQuery(
            "ids",
            "give ids, event_ids, a filter (destination, event_type, since, until) or all",
        )
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
    summary="Replay dead deliveries (same webhook-id, attempts reset) by ids, event_ids or filter",
)
async def replay(request: Request, doc: Annotated[dict[str, Any], Body()]) -> Response:
    tenant = tenant_of(request.scope)
    store = runtime_of(request).store
    try:
        event_ids = id_list(doc, "event_ids", "event ids")
        if event_ids is not None:
            if "ids" in doc:
                raise BadQuery("event_ids", "give ids or event_ids, not both")
            # Every dead delivery of those events: the selection becomes their ids.
            dead = await dead_of_events(store, tenant, event_ids)
            unknown = [e for e in event_ids if not dead.get(e)]
            if unknown:
                return nothing_matched("event_ids", unknown, "events with a dead delivery")
            doc = {**doc, "ids": [i for e in event_ids for i in dead[e]]}
            doc.pop("event_ids")
        query = query_from(doc, tenant)
    except BadQuery as exc:
        return problem_response(422, "invalid-selection", str(exc), field=exc.field)
    if query.ids is not None:
        # Named ids must all be dead letters: a typo (or an event id given as `ids`) is an
        # error that names it, and nothing is replayed, instead of `replayed: 0`.
        found = await store.dead_letters(msgspec.structs.replace(query, limit=len(query.ids)))
        known = {item.delivery.delivery_id for item in found.items}
        unknown = [i for i in query.ids if i not in known]
        if unknown:
            field = "event_ids" if event_ids is not None else "ids"
            return nothing_matched(field, unknown, "dead deliveries")
    count = await store.replay_dead(query, time.time())
    return JSONResponse({"replayed": count})


async def dead_of_events(store: Store, tenant: str, event_ids: list[str]) -> dict[str, list[str]]:
    """event id → the delivery ids of its dead deliveries (the tenant's events only)."""
    found: dict[str, list[str]] = {}
    for event_id in event_ids:
        report = await store.status(tenant, event_id)
        if report is not None:
            found[event_id] = [
                d.delivery_id for d in report.deliveries if d.state is DeliveryState.DEAD
            ]
    return found


def nothing_matched(field: str, unknown: list[str], what: str) -> Response:
    shown = ", ".join(repr(i) for i in unknown[:20]) + (" ..." if len(unknown) > 20 else "")
    hint = ""
    if field == "ids" and not all(i.startswith("msg_") for i in unknown):
        hint = " (ids are dead-letter ids, msg_...; to replay by event, use event_ids)"
    return problem_response(
        404,
        "dead-letter-not-found",
        f"{len(unknown)} of the {field} match no {what}, so nothing was replayed: {shown}{hint}",
        field=field,
        unknown=unknown,
    )


@router.delete("/dlq/{delivery_id}", status_code=204, summary="Delete one dead delivery")
async def delete_dead(delivery_id: str, request: Request) -> Response:
    query = DeadLetterQuery(tenant_id=tenant_of(request.scope), ids=(delivery_id,), limit=1)
    if not await runtime_of(request).store.purge_dead(query):
        return problem_response(404, "dead-letter-not-found", f"no dead delivery {delivery_id!r}")
    return Response(status_code=204)
