"""Keys: the API keys of the signed-in tenant (never their secrets)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ingestd.api.console.session import Session
from ingestd.api.console.web import Web


async def listing(web: Web, request: Request, session: Session) -> Response:
    tenant = session.principal.tenant
    configured = [k for k in web.runtime.settings.api_keys if k.tenant == tenant]
    return web.render(request, session, "keys.html", configured=configured)
