"""NUL in a path or query: no stored text can hold it, so it is a 400 problem up front
(it used to reach PostgreSQL and come back as a 500)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from support import ServerProcess, free_port

pytestmark = pytest.mark.postgres


async def test_nul_in_a_filter_or_path_is_a_400_problem(tmp_path: Path, pg_url: str) -> None:
    server = ServerProcess(tmp_path, port=free_port(), database_url=pg_url)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            answers = [
                await http.get("/events", params={"source": "a\x00b"}),
                await http.get("/events", params={"type": "t\x00"}),
                await http.get("/ingest/a%00b/status"),
                await http.get("/dlq", params={"destination": "\x00"}),
            ]
            after = await http.get("/events")  # the connection and the server are fine
    finally:
        await server.stop()
    for response in answers:
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "NUL" in response.json()["detail"]
    assert after.status_code == 200
    assert "Traceback" not in server.logs()
