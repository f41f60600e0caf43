"""The exceptions the SDK raises; only `send()` raises them, `emit()` never does.

ClientError              (the SDK could not get the event accepted)
├── EventRejected        (the server refused the event: a 4xx problem)
├── SendFailed           (no answer after every attempt: network, 429, 5xx)
└── ClientClosed         (the client was closed)

They derive from Exception alone: the SDK is installed without the server, so catching
the server's `ingestd.errors.IngestdError` no longer catches them (it did before 0.2).
"""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """The event could not be sent."""


class EventRejected(ClientError):
    """The server refused the event."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        detail = problem.get("detail") or problem.get("title") or "rejected"
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.problem = problem


class SendFailed(ClientError):
    """The server did not accept the event after every attempt."""


class ClientClosed(ClientError):
    """The client is closed."""
