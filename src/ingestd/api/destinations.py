"""The destinations admin API: list, create, show, patch, delete; breaker state shown.

Changes are written to the store and reloaded at once here and within about a second in
every other process.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from ingestd.api.auth import DEFAULT_TENANT
from ingestd.api.routes import problem_response, runtime_of
from ingestd.api.views import rfc3339
from ingestd.catalog import stored_config
from ingestd.config import DestinationConfig, masked
from ingestd.destinations import build_destination
from ingestd.errors import IngestdError
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


async def validated(request: Request, doc: dict[str, Any]) -> DestinationConfig | Response:
    """The config, or a 422 saying what is wrong with it."""
    try:
        config = DestinationConfig(**doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ()))
        return problem_response(
            422, "invalid-destination", f"{field}: {first.get('msg', 'invalid')}", field=field
        )
    try:
        adapter = build_destination(config, runtime_of(request).settings)
    except (IngestdError, ValueError, TypeError) as exc:
        return problem_response(422, "invalid-destination", str(exc))
    await adapter.close()
    return config


def not_found(name: str) -> Response:
    return problem_response(404, "destination-not-found", f"no destination named {name!r}")


@router.get("/destinations", summary="Every destination, its subscription and breaker state")
async def list_destinations(request: Request) -> Response:
    rows = await runtime_of(request).store.list_destinations(DEFAULT_TENANT)
    return JSONResponse({"destinations": [destination_body(r) for r in rows]})


@router.post("/destinations", status_code=201, summary="Create a destination")
async def create_destination(request: Request, doc: Doc) -> Response:
    config = await validated(request, doc)
    if isinstance(config, Response):
        return config
    rt = runtime_of(request)
    now = time.time()
    if not await rt.store.create_destination(
        DEFAULT_TENANT, config.name, stored_config(config), now
    ):
        return problem_response(
            409, "destination-exists", f"a destination named {config.name!r} exists; PATCH it"
        )
    if not config.enabled:
        await rt.store.disable_destination(DEFAULT_TENANT, config.name, "created disabled", now)
    await rt.catalog.refresh()
    row = await rt.store.get_destination(DEFAULT_TENANT, config.name)
    assert row is not None
    return JSONResponse(
        destination_body(row), 201, headers={"location": f"/destinations/{config.name}"}
    )


@router.get("/destinations/{name}", summary="One destination, with its breaker state")
async def get_destination(name: str, request: Request) -> Response:
    row = await runtime_of(request).store.get_destination(DEFAULT_TENANT, name)
    return JSONResponse(destination_body(row)) if row else not_found(name)


@router.patch(
    "/destinations/{name}",
    summary="Change a destination (JSON merge patch; `enabled: true` re-enables it)",
)
async def patch_destination(name: str, request: Request, doc: Doc) -> Response:
    rt = runtime_of(request)
    row = await rt.store.get_destination(DEFAULT_TENANT, name)
    if row is None:
        return not_found(name)
    if doc.get("name", name) != name:
        return problem_response(422, "invalid-destination", "a destination cannot be renamed")
    merged = dict(row.config)
    for key, value in doc.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    enabled = merged.pop("enabled", None)
    if enabled is not None and not isinstance(enabled, bool):
        return problem_response(422, "invalid-destination", "enabled: must be true or false")
    config = await validated(request, {**merged, "name": name})
    if isinstance(config, Response):
        return config
    if not await rt.store.update_destination(
        DEFAULT_TENANT, name, stored_config(config), time.time(), enabled=enabled
    ):
        return not_found(name)
    await rt.catalog.refresh()
    row = await rt.store.get_destination(DEFAULT_TENANT, name)
    return JSONResponse(destination_body(row)) if row else not_found(name)


@router.delete(
    "/destinations/{name}",
    status_code=204,
    summary="Delete a destination (its unfinished deliveries become dead letters)",
)
async def delete_destination(name: str, request: Request) -> Response:
    rt = runtime_of(request)
    if not await rt.store.delete_destination(DEFAULT_TENANT, name, time.time()):
        return not_found(name)
    await rt.catalog.refresh()
    return Response(status_code=204)
