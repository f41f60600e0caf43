"""The OpenAPI document as the server answers: every operation declares the problem+json
answers any request may get, and /metrics its text exposition.

FastAPI declares only what a route names (and a JSON 422 ingestd never sends), so a
schemathesis run found 19 undocumented status codes and 10 undocumented content types.
The problems are added here once, for every operation, instead of on each route.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from ingestd.api.responses import PROBLEM

PROBLEMS = {
    400: "Malformed request: not JSON, duplicate member names, a bad cursor",
    401: "No valid API key (when keys are configured)",
    403: "The key lacks the scope this needs",
    404: "No such resource",
    408: "The request head or body did not arrive in time",
    409: "Conflict with what is stored",
    413: "The body (or a batch) is over its limit",
    414: "The URL is over INGESTD_HTTP_MAX_URL_BYTES",
    415: "Not JSON, or a Content-Encoding that is not accepted",
    422: "Valid JSON that is not acceptable; `field` names what",
    429: "Over the rate limit; Retry-After says when it fits",
    431: "The request head is over INGESTD_HTTP_MAX_HEADER_BYTES",
    503: "Overloaded or the store is unavailable (nothing stored), or `outcome-unknown`: a "
    "commit failed after it may have reached the disk, resend under the same ids; "
    "Retry-After says when to retry",
}
"""The problems any operation may answer (RFC 9457 application/problem+json)."""

PROBLEM_SCHEMA = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "field": {"type": "string"},
    },
    "additionalProperties": True,
}

TEXT_ANSWERS = {("/metrics", "get"): "text/plain"}
"""Operations whose 200 is not JSON."""


def with_problems(document: dict[str, Any]) -> dict[str, Any]:
    """Add the problem answers (and a Problem schema) to every operation of `document`."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    schemas.pop("HTTPValidationError", None)  # answered as a 422 problem instead
    schemas.pop("ValidationError", None)
    problem = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            responses = operation.setdefault("responses", {})
            for status, meaning in PROBLEMS.items():
                entry = responses.setdefault(str(status), {})
                entry.setdefault("description", meaning)
                entry["content"] = problem
            text = TEXT_ANSWERS.get((path, method))
            if text is not None:
                responses["200"]["content"] = {text: {"schema": {"type": "string"}}}
    return document


def install(app: FastAPI) -> None:
    """Make `app.openapi()` (and so /openapi.json and /docs) return the described API."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_problems(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
