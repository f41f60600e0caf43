"""What every framework route shares: problem+json responses, core errors answered by
their HTTP mapping, and the runtime the app serves."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import JSONResponse

from ingestd.api.problems import INTERNAL_DETAIL, answer_for, problem
from ingestd.errors import IngestdError

if TYPE_CHECKING:
    from ingestd.runtime import Runtime

PROBLEM = "application/problem+json"


class ProblemResponse(JSONResponse):
    media_type = PROBLEM


def problem_response(status: int, slug: str, detail: str, **extra: Any) -> ProblemResponse:
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return ProblemResponse(problem(status, slug, detail, **extra), status, headers=headers)


def error_response(exc: IngestdError, slug: str | None = None) -> ProblemResponse:
    """A core error as the problem its class maps to (`slug` overrides the type)."""
    status, default_slug = answer_for(exc)
    if status == 500:  # unmapped: its text may say what only the log should
        return problem_response(500, "internal", INTERNAL_DETAIL)
    return problem_response(
        status,
        slug or default_slug,
        str(exc),
        field=getattr(exc, "field", None),
        unknown=getattr(exc, "unknown", None),
    )


def runtime_of(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt
