"""An exception no route expected becomes a logged 500 problem, never a text/plain 500."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI

from ingestd.api.routes import add_problem_handlers

SECRET = "password=hunter2 at db.internal:5432"


def raising_app() -> FastAPI:
    app = FastAPI()
    add_problem_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(SECRET)

    return app


async def test_an_unexpected_exception_is_a_problem_without_its_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport = httpx.ASGITransport(app=raising_app(), raise_app_exceptions=False)
    with caplog.at_level(logging.ERROR, logger="ingestd.api"):
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"].endswith("/internal") and body["status"] == 500
    assert "logged" in body["detail"]
    assert SECRET not in response.text and "RuntimeError" not in response.text
    [record] = [r for r in caplog.records if r.name == "ingestd.api"]
    assert "GET /boom" in record.getMessage()
    assert record.exc_info is not None and str(record.exc_info[1]) == SECRET


@pytest.mark.parametrize("status", [400, 401, 403, 404, 408, 413, 414, 415, 422, 429, 431, 503])
def test_every_problem_status_has_a_real_title(status: int) -> None:
    from ingestd.api.problems import problem

    title = problem(status, "x", "d")["title"]
    assert title and title != "Error"


def test_a_403_problem_is_titled_forbidden() -> None:
    from ingestd.api.problems import problem

    assert problem(403, "forbidden", "no")["title"] == "Forbidden"
