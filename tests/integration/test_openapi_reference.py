"""The HTTP API reference is rendered from the very document a running server serves."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from support import ServerProcess

sys.path.insert(0, str(Path(__file__).parents[2] / "tools" / "docgen"))

import reference


async def test_generated_document_is_what_the_server_serves(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        served = (await client.get("/openapi.json")).json()
    assert served == reference.openapi_document()
