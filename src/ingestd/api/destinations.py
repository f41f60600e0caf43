"""The destinations admin API: list, create, show, patch, delete; breaker state shown.

The admin service (admin.py) does the work; its errors become problems through the
app's mapping (destination-not-found 404, destination-exists 409, invalid-destination 422).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse, Response

from ingestd.api.responses import runtime_of
from ingestd.api.views import rfc3339
from ingestd.config import masked
from ingestd.store.protocol import DestinationRow

router = APIRouter(tags=["destinations"])
Doc = Annotated[dict[str, Any], Body()]


def destination_body(row: DestinationRow) -> dict[str, Any]:
    body: dict[str, Any] = masked(dict(row.config))
    body.update(
        name=row.name,
        enabled=row.enabled,
        disabled_reason=row.disabled_reason,
        disabled_at=rfc3339(row.disabled_at),
        breaker={
            "state": row.breaker_state.value,
            "until": rfc3339(row.breaker_until),
            "failing_since": rfc3339(row.failing_since),
        },
        created_at=rfc3339(row.created_at),
        updated_at=rfc3339(row.updated_at),
    )
    return body


@router.get("/destinations", summary="Every destination, its subscription and breaker state")
async def list_destinations(request: Request) -> Response:
    rows = await runtime_of(request).admin.destinations()
    return JSONResponse({"destinations": [destination_body(r) for r in rows]})


@router.post("/destinations", status_code=201, summary="Create a destination")
async def create_destination(request: Request, doc: Doc) -> Response:
    row = await runtime_of(request).admin.create_destination(doc)
    return JSONResponse(
        destination_body(row), 201, headers={"location": f"/destinations/{row.name}"}
    )


@router.get("/destinations/{name}", summary="One destination, with its breaker state")
async def get_destination(name: str, request: Request) -> Response:
    return JSONResponse(destination_body(await runtime_of(request).admin.destination(name)))


@router.patch(
    "/destinations/{name}",
    summary="Change a destination (JSON merge patch; `enabled: true` re-enables it)",
)
async def patch_destination(name: str, request: Request, doc: Doc) -> Response:
    row = await runtime_of(request).admin.patch_destination(name, doc)
    return JSONResponse(destination_body(row))


@router.delete(
    "/destinations/{name}",
    status_code=204,
    summary="Delete a destination (its unfinished deliveries become dead letters)",
)
async def delete_destination(name: str, request: Request) -> Response:
    await runtime_of(request).admin.delete_destination(name)
    return Response(status_code=204)
