"""RFC 9457 problem details: every 4xx/5xx ingestd sends is one of these."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import msgspec

PROBLEM_TYPE = "https://ingestd.dev/problems/"
CONTENT_TYPE = b"application/problem+json"
INTERNAL_DETAIL = (
    "ingestd hit an internal error handling this request; the server logged it with a "
    "traceback (search its log for this method and path). Retrying may not help."
)
"""The detail of every 500: the exception text stays in the log, never in the answer."""

TITLES = {
    400: "Malformed request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    408: "Request timeout",
    409: "Conflict",
    413: "Payload too large",
    414: "URI too long",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    431: "Request header fields too large",
    500: "Internal error",
    503: "Service unavailable",
}


def title_of(status: int) -> str:
    """Our title for a status, else the standard reason phrase (never a bare "Error")."""
    title = TITLES.get(status)
    if title is None:
        try:
            title = HTTPStatus(status).phrase
        except ValueError:
            title = "Client error" if status < 500 else "Server error"
    return title


def problem(
    status: int, slug: str, detail: str, *, title: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A problem object; `slug` becomes the stable type URI."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + slug,
        "title": title or title_of(status),
        "status": status,
        "detail": detail,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def problem_bytes(status: int, slug: str, detail: str, **extra: Any) -> bytes:
    return msgspec.json.encode(problem(status, slug, detail, **extra))
