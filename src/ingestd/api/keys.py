"""API keys kept in the store, as admin routes: make one (its plaintext shown once), list
them, look at one, revoke one. The CLI's `ingestd keys` does the same on the store.

An admin key of the `default` tenant (the operator) manages every tenant's keys; another
tenant's admin key manages its own tenant's only.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse, Response

from ingestd.api.auth import DEFAULT_TENANT, PRINCIPAL_KEY, Principal, tenant_of
from ingestd.api.responses import problem_response, runtime_of
from ingestd.api.views import rfc3339
from ingestd.keys import InvalidKeyRequest, StoredKey, expiry, key_view, new_key

router = APIRouter(tags=["api keys"])


def key_body(key: StoredKey, now: float) -> dict[str, Any]:
    """What is shown of a stored key: never its digest, never its plaintext."""
    return {**key_view(key, now, rfc3339), "rate": key.rate, "burst": key.burst}


def managed_tenant(request: Request) -> str | None:
    """The tenant whose keys the caller manages; None: every tenant's (the operator)."""
    principal = request.scope.get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal) or principal.tenant == DEFAULT_TENANT:
        return None
    return principal.tenant


@router.post("/keys", status_code=201, summary="Make an API key; its plaintext is shown once")
async def create_key(request: Request, doc: Annotated[dict[str, Any], Body()]) -> Response:
    own = managed_tenant(request)
    tenant = doc.get("tenant", tenant_of(request.scope))
    if not isinstance(tenant, str) or (own is not None and tenant != own):
        return problem_response(
            403, "forbidden", f"this key manages the keys of tenant {own!r} only", field="tenant"
        )
    scopes = doc.get("scopes", ["ingest"])
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        return problem_response(422, "invalid-key", "scopes: a list of ingest, read, admin")
    for field, kind in (("source", str), ("name", str)):
        if doc.get(field) is not None and not isinstance(doc[field], kind):
            return problem_response(422, "invalid-key", f"{field}: a string", field=field)
    try:
        plaintext, key = new_key(
            tenant_id=tenant,
            scopes=scopes,
            source=doc.get("source"),
            name=doc.get("name"),
            expires_at=expiry(doc.get("expires")),
            rate=float(doc["rate"]) if doc.get("rate") is not None else None,
            burst=int(doc["burst"]) if doc.get("burst") is not None else None,
        )
    except (InvalidKeyRequest, TypeError, ValueError) as exc:
        return problem_response(422, "invalid-key", str(exc))
    await runtime_of(request).store.create_api_key(key)
    await reload(request)
    body = key_body(key, time.time())
    body["key"] = plaintext  # the only time it is shown; only its SHA-256 is kept
    return JSONResponse(body, status_code=201, headers={"Cache-Control": "no-store"})


@router.get("/keys", summary="Stored API keys (revoked and expired ones too), oldest first")
async def list_keys(request: Request, tenant: str | None = None) -> Response:
    own = managed_tenant(request)
    keys = await runtime_of(request).store.api_keys(own if own is not None else tenant)
    now = time.time()
    return JSONResponse({"keys": [key_body(k, now) for k in keys]})


async def reload(request: Request) -> None:
    watcher = getattr(request.app.state, "keys", None)
    if watcher is not None:
        await watcher.refresh()


async def find(request: Request, key_id: str) -> StoredKey | None:
    keys = await runtime_of(request).store.api_keys(managed_tenant(request))
    return next((k for k in keys if k.id == key_id), None)


@router.get("/keys/{key_id}", summary="One stored API key")
async def show_key(key_id: str, request: Request) -> Response:
    key = await find(request, key_id)
    if key is None:
        return problem_response(404, "key-not-found", f"no API key {key_id!r}")
    return JSONResponse(key_body(key, time.time()))


@router.delete(
    "/keys/{key_id}",
    summary="Revoke a stored API key: every API process refuses it within seconds",
)
async def revoke_key(key_id: str, request: Request) -> Response:
    store = runtime_of(request).store
    if await store.revoke_api_key(key_id, time.time(), managed_tenant(request)):
        await reload(request)  # refused here at once; the other processes within a second
    key = await find(request, key_id)  # revoked now, or earlier (revoking is idempotent)
    if key is None:
        return problem_response(404, "key-not-found", f"no API key {key_id!r}")
    return JSONResponse(key_body(key, time.time()))
