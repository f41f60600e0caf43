"""Keys: the signed-in tenant's API keys (configured and stored), make one (its plaintext
shown on that answer only), revoke one. Stored keys go through the store's KeyStore role,
as the admin routes (api/keys.py) and `ingestd keys` do; never a secret but the new one."""

from __future__ import annotations

import time
import urllib.parse

from starlette.requests import Request
from starlette.responses import Response

from ingestd.api.console.session import Session
from ingestd.api.console.web import BASE, Denied, Form, Web, first, redirect
from ingestd.keys import SCOPES, InvalidKeyRequest, StoredKey, expiry, new_key


async def listing(web: Web, request: Request, session: Session) -> Response:
    return await page(web, request, session, notice=request.query_params.get("notice"))


async def page(
    web: Web,
    request: Request,
    session: Session,
    *,
    notice: str | None = None,
    created: tuple[str, StoredKey] | None = None,
    status: int = 200,
    error: str | None = None,
) -> Response:
    # The console is scoped to the signed-in key's tenant, the operator's included (the
    # API's GET /keys lets the operator see every tenant's; the console shows one tenant).
    tenant = session.principal.tenant
    configured = [k for k in web.runtime.settings.api_keys if k.tenant == tenant]
    stored = await web.store.api_keys(tenant)
    return web.render(
        request,
        session,
        "keys.html",
        status,
        configured=configured,
        stored=stored,
        now=time.time(),
        scopes=SCOPES,
        created=created,
        notice=notice,
        error=error,
    )


async def create(web: Web, request: Request, session: Session, form: Form) -> Response:
    try:
        plaintext, key = new_key(
            tenant_id=session.principal.tenant,
            scopes=[s for s in form.get("scopes", []) if s],
            source=first(form, "source") or None,
            name=first(form, "name") or None,
            expires_at=expiry(first(form, "expires") or None),
        )
    except InvalidKeyRequest as exc:
        return await page(web, request, session, status=422, error=str(exc))
    await web.store.create_api_key(key)
    await web.reload_keys()
    # Shown on this answer only: every console answer is Cache-Control: no-store, and the
    # page is not a redirect target, so reloading the list never shows it again.
    return await page(web, request, session, created=(plaintext, key))


async def revoke(web: Web, request: Request, session: Session, form: Form) -> Response:
    key_id = request.path_params["key_id"]
    tenant = session.principal.tenant
    revoked = await web.store.revoke_api_key(key_id, time.time(), tenant)
    # Revoking is idempotent; a key of another tenant is as unknown as a missing one.
    if not revoked and all(k.id != key_id for k in await web.store.api_keys(tenant)):
        raise Denied(404, "key-not-found", f"no API key {key_id!r}")
    await web.reload_keys()
    notice = urllib.parse.urlencode({"notice": f"revoked {key_id}"})
    return redirect(f"{BASE}/keys?{notice}")
