"""The pull inbox: long-poll for events with a lease (visibility timeout), acknowledge.

Inbox destinations' deliveries are rows the worker never pushes; this endpoint leases
them instead. An event not acknowledged before its lease ends is handed out again, with
the same id.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response

from ingestd.api.auth import tenant_of
from ingestd.api.responses import problem_response, runtime_of
from ingestd.api.views import event_body, rfc3339

router = APIRouter(tags=["inbox"])


def inbox_error(request: Request, destination: str) -> Response | None:
    route = runtime_of(request).directory.get(destination)
    if route is None or route.config.kind != "inbox":
        return problem_response(
            404, "inbox-not-found", f"no destination of kind 'inbox' named {destination!r}"
        )
    if not route.config.enabled:
        return problem_response(409, "destination-disabled", f"{destination!r} is disabled")
    return None


@router.get("/inbox/{destination}", summary="Lease up to `limit` events, waiting up to `wait` s")
async def pull(
    destination: str,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    wait: Annotated[float, Query(ge=0, le=60, description="long-poll seconds")] = 0.0,
    visibility: Annotated[float | None, Query(gt=0, le=43200, description="lease seconds")] = None,
) -> Response:
    error = inbox_error(request, destination)
    if error is not None:
        return error
    rt = runtime_of(request)
    route = rt.directory.get(destination)
    # The adapter's checked value: a stored row it could not build falls back to the default.
    configured = getattr(route.destination, "visibility", None) if route else None
    lease = visibility or float(configured or rt.settings.inbox_visibility)
    deadline = time.monotonic() + wait
    tenant = tenant_of(request.scope)
    poll = rt.settings.poll_interval  # the same fallback the worker's claim loop uses
    while True:
        # Registered before looking, so a commit between the look and the wait still wakes.
        arrival = rt.directory.arrivals.expect(destination)
        try:
            now = time.time()
            jobs = await rt.store.lease_inbox(tenant, destination, limit, lease, now)
            remaining = deadline - time.monotonic()
            if jobs or remaining <= 0 or await request.is_disconnected():
                break
            # Woken at once by a commit in this process; the poll is for other processes'
            # commits and for leases that ran out.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(arrival), min(poll, remaining))
        finally:
            arrival.cancel()
    return JSONResponse(
        {
            "events": [
                {"id": j.delivery_id, "attempt": j.attempt, "event": event_body(j.event)}
                for j in jobs
            ],
            "lease_until": rfc3339(now + lease) if jobs else None,
        }
    )


@router.get(
    "/inbox/{destination}/waiting",
    summary="The oldest events waiting in an inbox, leasing nothing (the read scope's view)",
)
async def waiting(
    destination: str, request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> Response:
    route = runtime_of(request).directory.get(destination)
    if route is None or route.config.kind != "inbox":
        return problem_response(
            404, "inbox-not-found", f"no destination of kind 'inbox' named {destination!r}"
        )
    items = await runtime_of(request).store.peek_inbox(tenant_of(request.scope), destination, limit)
    return JSONResponse(
        {
            "events": [
                {
                    "id": i.delivery.delivery_id,
                    "state": i.delivery.state.value,
                    "attempts": i.delivery.attempts,
                    "event": event_body(i.event),
                }
                for i in items
            ]
        }
    )


@router.post("/inbox/{destination}/ack", summary="Acknowledge leased events by id")
async def ack(
    destination: str, request: Request, doc: Annotated[dict[str, Any], Body()]
) -> Response:
    route = runtime_of(request).directory.get(destination)
    if route is None or route.config.kind != "inbox":
        return problem_response(
            404, "inbox-not-found", f"no destination of kind 'inbox' named {destination!r}"
        )
    ids = doc.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return problem_response(
            422, "invalid-ack", "ids: a list of the ids GET /inbox returned", field="ids"
        )
    count = await runtime_of(request).store.ack_inbox(
        tenant_of(request.scope), destination, ids, time.time()
    )
    return JSONResponse({"acked": count})
