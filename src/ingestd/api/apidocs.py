"""`/docs`: Swagger UI from files inside installed packages, under a same-origin CSP.

FastAPI's own /docs page loads Swagger UI from a public CDN, so in a network without
internet access it renders nothing. Here the page, its script and stylesheet come from
this server (the pinned `fastapi-offline` wheel ships Swagger UI's files, our start-up
script is in `static/`), and `Content-Security-Policy: default-src 'self'` tells the
browser to fetch nothing from anywhere else.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response

from ingestd import __version__
from ingestd.api.problems import problem

VENDOR = Path(fastapi_offline.__file__).parent / "static"
OURS = Path(__file__).parent / "static"
ASSETS: dict[str, tuple[Path, str]] = {
    "swagger-ui.css": (VENDOR / "swagger-ui.css", "text/css"),
    "swagger-ui-bundle.js": (VENDOR / "swagger-ui-bundle.js", "text/javascript"),
    "favicon.png": (VENDOR / "favicon.png", "image/png"),
    "swagger-init.js": (OURS / "swagger-init.js", "text/javascript"),
}
DOCS_PATH = "/docs"
ASSET_PATHS = frozenset(f"{DOCS_PATH}/{name}" for name in ASSETS)
"""Open whenever /docs is (INGESTD_AUTH_OPEN_PATHS): the page is useless without them."""

# Swagger UI draws its icons from data: URIs in its stylesheet, and sets styles from script
# (allowed under style-src 'self'); nothing else is needed beyond the origin itself.
CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ingestd {__version__} — HTTP API</title>
<link rel="icon" type="image/png" href="{DOCS_PATH}/favicon.png">
<link rel="stylesheet" href="{DOCS_PATH}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{DOCS_PATH}/swagger-ui-bundle.js"></script>
<script src="{DOCS_PATH}/swagger-init.js"></script>
</body>
</html>
"""

router = APIRouter(include_in_schema=False)


@router.get(DOCS_PATH)
async def docs_page() -> Response:
    return HTMLResponse(PAGE, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


@router.get(DOCS_PATH + "/{name}")
async def docs_asset(name: str) -> Response:
    if name not in ASSETS:
        body = problem(404, "not-found", f"no file {name!r} in the API docs")
        return JSONResponse(body, 404, media_type="application/problem+json")
    path, media_type = ASSETS[name]
    # The files change only with the installed packages: a day of caching, revalidated.
    headers = {**SECURITY_HEADERS, "Cache-Control": "public, max-age=86400"}
    return FileResponse(path, media_type=media_type, headers=headers)
