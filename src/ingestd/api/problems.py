"""RFC 9457 problem details: every 4xx/5xx ingestd sends is one of these, and the HTTP
status and problem type each core exception is answered with (`answer_for`)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import msgspec

from ingestd import errors

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


ANSWERS: dict[type[errors.IngestdError], tuple[int, str]] = {
    errors.MalformedBody: (400, "malformed-json"),
    errors.InvalidEvent: (422, "invalid-event"),
    errors.InvalidCursor: (400, "invalid-cursor"),
    errors.InvalidDestination: (422, "invalid-destination"),
    errors.InvalidSelection: (422, "invalid-selection"),
    errors.InvalidRequest: (422, "invalid-request"),
    errors.DestinationNotFound: (404, "destination-not-found"),
    errors.DeadLetterNotFound: (404, "dead-letter-not-found"),
    errors.NotFound: (404, "not-found"),
    errors.DestinationExists: (409, "destination-exists"),
    errors.IdempotencyMismatch: (422, "idempotency-key-reused"),
    errors.EventIdConflict: (409, "event-id-conflict"),
    errors.Overloaded: (503, "overloaded"),
    errors.OutcomeUnknown: (503, "outcome-unknown"),
    errors.StoreUnavailable: (503, "store-unavailable"),
}
"""HTTP status and problem slug per core exception; a subclass without its own entry is
answered as its nearest listed base. Anything else is a 500."""


def answer_for(exc: BaseException) -> tuple[int, str]:
    """(status, slug) for an exception, by its class or its nearest listed base."""
    for cls in type(exc).__mro__:
        answer = ANSWERS.get(cls)
        if answer is not None:
            return answer
    return 500, "internal"
