"""The framework app: every route except the fast ingest path, and one OpenAPI document.

The ingest routes are declared here too (for OpenAPI and /docs) but requests to them are
answered by api/ingest.py before they reach FastAPI.
"""

from __future__ import annotations

import logging
import os
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import Scope

from ingestd import __version__
from ingestd.api import apidocs, destinations, dlq, inbox, keys, openapi
from ingestd.api.auth import tenant_of
from ingestd.api.problems import INTERNAL_DETAIL, answer_for
from ingestd.api.responses import error_response, problem_response, runtime_of
from ingestd.api.views import delivery_body, event_body, status_body
from ingestd.errors import IngestdError, InvalidCursor, InvalidEvent, StoreUnavailable
from ingestd.ingest.envelope import MAX_TEXT, parse_time
from ingestd.obs import scrape
from ingestd.runtime import Runtime
from ingestd.store.protocol import EventQuery

ANSWERED_KEY = "ingestd.answered"
"""Set in the ASGI scope once an unexpected exception was logged and answered with a 500."""

log = logging.getLogger("ingestd.api")


Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT, pattern="^[^\x00]*$")]
"""An envelope text field as the fast path checks it (non-empty, bounded, no NUL)."""


class EventIn(BaseModel):
    """The event envelope (aliases event_type, event_id, timestamp are also accepted)."""

    id: Text | None = Field(None, description="Client's id; the server makes a UUIDv7 if absent")
    source: Text = Field(..., description="Where the event comes from; scopes idempotency keys")
    type: Text | None = Field(None, description="Event type, e.g. page.viewed")
    occurred_at: str | None = Field(None, description="RFC 3339; defaults to now")
    actor_id: Text | None = None
    subject: Text | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class BatchIn(BaseModel):
    events: list[EventIn]


class Accepted(BaseModel):
    status: str = "accepted"
    id: str
    event_id: str
    idempotency_key: str | None
    status_url: str


class BatchResults(BaseModel):
    results: list[dict[str, Any]]
    accepted: int
    duplicate: int
    rejected: int


docs_only = APIRouter(tags=["ingest"])
INGEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Duplicate: the same key and payload were accepted before"},
    403: {"description": "The key lacks the ingest scope, or its pinned source differs"},
}
"""Besides the 202 and the problems every operation declares (api/openapi.py)."""
IDEMPOTENCY_DOC = (
    "Idempotency-Key (or X-Idempotency-Key, X-Event-Id) header; else `source:id` when the "
    "event has an id. Same key and payload → 200 duplicate; other payload → 422."
)


@docs_only.post(
    "/ingest",
    status_code=202,
    response_model=Accepted,
    summary="Ingest one event",
    description="Answers 202 only after the event is durably committed. " + IDEMPOTENCY_DOC,
    responses=INGEST_RESPONSES,
)
async def ingest_doc(event: EventIn) -> Accepted:  # pragma: no cover - served by api/ingest.py
    raise NotImplementedError


@docs_only.post(
    "/api/events",
    status_code=202,
    response_model=Accepted,
    summary="Ingest one event (alias of /ingest)",
    responses=INGEST_RESPONSES,
)
async def ingest_alias_doc(event: EventIn) -> Accepted:  # pragma: no cover
    raise NotImplementedError


@docs_only.post(
    "/ingest/batch",
    status_code=207,
    response_model=BatchResults,
    summary="Ingest up to INGESTD_MAX_BATCH events, committed together",
)
async def ingest_batch_doc(batch: BatchIn) -> BatchResults:  # pragma: no cover
    raise NotImplementedError


router = APIRouter()


@router.get("/ingest/{event_id}/status", tags=["ingest"], summary="An event's processing status")
async def event_status(event_id: str, request: Request) -> Response:
    report = await runtime_of(request).store.status(tenant_of(request.scope), event_id)
    if report is None:
        return problem_response(404, "event-not-found", f"no event with id {event_id!r}")
    return JSONResponse(status_body(report))


@router.get(
    "/deliveries/{delivery_id}",
    tags=["events"],
    summary="One delivery whole: its state, every attempt (the attempt log) and its event",
)
async def show_delivery(delivery_id: str, request: Request) -> Response:
    view = await runtime_of(request).store.delivery(tenant_of(request.scope), delivery_id)
    if view is None:
        return problem_response(404, "delivery-not-found", f"no delivery {delivery_id!r}")
    return JSONResponse({**delivery_body(view.delivery), "event": event_body(view.event)})


@router.get("/events", tags=["events"], summary="Stored events, oldest first, cursor-paginated")
async def list_events(
    request: Request,
    source: str | None = None,
    type: str | None = None,
    since: Annotated[str | None, Query(description="occurred_at ≥ since (RFC 3339)")] = None,
    until: Annotated[str | None, Query(description="occurred_at < until (RFC 3339)")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    try:
        query = EventQuery(
            tenant_id=tenant_of(request.scope),
            source=source,
            type=type,
            since=parse_time(since, "since") if since else None,
            until=parse_time(until, "until") if until else None,
            cursor=cursor,
            limit=limit,
        )
    except InvalidEvent as exc:
        return problem_response(422, "invalid-query", str(exc), field=exc.field)
    try:
        page = await runtime_of(request).store.events(query)
    except InvalidCursor as exc:
        return problem_response(400, "invalid-cursor", str(exc), field="cursor")
    return JSONResponse(
        {"events": [event_body(e) for e in page.events], "next_cursor": page.next_cursor}
    )


@router.get("/health", tags=["operations"], summary="Liveness: touches nothing external")
async def health() -> dict[str, Any]:
    # pid: which process answered, behind `ingestd api --workers N` or a load balancer.
    return {"status": "ok", "version": __version__, "pid": os.getpid()}


@router.get(
    "/ready", tags=["operations"], summary="Readiness: a 202 is possible now (a commit works)"
)
async def ready(request: Request) -> Response:
    # Reading is not enough: with the disk full or fsync failing the store still answers
    # SELECTs while every ingest is a 503. A small real commit says what a 202 needs.
    try:
        await runtime_of(request).store.probe_commit()
    except StoreUnavailable as exc:
        return problem_response(503, "store-unavailable", f"a commit fails: {exc}")
    return JSONResponse({"status": "ready"})


@router.get("/metrics", tags=["operations"], summary="Prometheus exposition")
async def prometheus(request: Request) -> Response:
    body = await scrape.exposition(runtime_of(request).store)
    return Response(body, media_type=scrape.CONTENT_TYPE)


def create_framework_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(
        title="ingestd",
        version=__version__,
        description="Event-ingestion gateway: a 202 means the event is durably stored.",
        docs_url=None,  # FastAPI's pages load Swagger UI and ReDoc from a CDN: see apidocs
        redoc_url=None,
    )
    app.state.runtime = runtime
    for routes in (
        docs_only,
        router,
        apidocs.router,
        destinations.router,
        dlq.router,
        inbox.router,
        keys.router,
    ):
        app.include_router(routes)
    add_problem_handlers(app)
    openapi.install(app)
    return app


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """The methods some route takes at this path (FastAPI has a route per method)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


async def internal_problem(request: Request, exc: Exception) -> Response:
    """Any exception no route expected: logged with its traceback, answered with a 500
    problem whose detail never carries the exception's text."""
    log.error("unhandled error serving %s %s", request.method, request.url.path, exc_info=exc)
    request.scope[ANSWERED_KEY] = True
    return problem_response(500, "internal", INTERNAL_DETAIL)


def add_problem_handlers(app: FastAPI) -> None:
    """Every error the framework app answers becomes RFC 9457 problem+json."""
    app.add_exception_handler(Exception, internal_problem)

    @app.exception_handler(HTTPException)
    async def http_problem(request: Request, exc: HTTPException) -> Response:
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404:
            detail = f"no route {request.method} {request.url.path}"
        elif exc.status_code == 405:
            detail = f"{request.url.path} does not take {request.method}"
        response = problem_response(exc.status_code, slug, detail)
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:  # every method of the path, not only one route's
            response.headers["Allow"] = ", ".join(allowed_methods(app, request.scope))
        return response

    @app.exception_handler(RequestValidationError)
    async def validation_problem(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ()))
        return problem_response(
            422, "invalid-request", f"{field}: {first.get('msg', 'invalid')}", field=field
        )

    @app.exception_handler(IngestdError)
    async def core_problem(request: Request, exc: IngestdError) -> Response:
        """A core error a route let through: answered as its class maps (api/problems.py);
        one that maps to nothing is a bug, answered like any other."""
        if answer_for(exc)[0] == 500:
            return await internal_problem(request, exc)
        return error_response(exc)
