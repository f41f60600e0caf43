"""A real request that reaches an unexpected exception: a logged 500 problem+json."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from support import ServerProcess, free_port

pytestmark = pytest.mark.postgres


async def test_an_unexpected_store_error_is_a_500_problem_and_logged_once(
    tmp_path: Path, pg_url: str
) -> None:
    # PostgreSQL text cannot hold NUL: psycopg raises an error no route expects.
    server = ServerProcess(tmp_path, port=free_port(), database_url=pg_url)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            response = await http.get("/events", params={"source": "a\x00b"})
            # The connection stays usable: the server did not see the exception escape.
            after = await http.get("/events")
    finally:
        await server.stop()
    assert response.status_code == 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"].endswith("/internal") and "logged" in body["detail"]
    assert "NUL" not in response.text and "0x00" not in response.text
    assert after.status_code == 200
    logs = server.logs()
    assert "unhandled error serving GET /events" in logs
    assert logs.count("Traceback") == 1, logs
