"""The exceptions the SDK raises; only `send()` raises them, `emit()` never does.

IngestdError
└── ClientError          (the SDK could not get the event accepted)
    ├── EventRejected    (the server refused the event: a 4xx problem)
    ├── SendFailed       (no answer after every attempt: network, 429, 5xx)
    └── ClientClosed     (the client was closed)
"""

from __future__ import annotations

from typing import Any

from ingestd.errors import IngestdError


class ClientError(IngestdError):
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
