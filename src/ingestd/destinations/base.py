"""What a destination is to the core: something that takes a Job and reports an Attempt.

Adapters (webhook, email, handler, inbox) implement `Destination`; the core never
imports them. This is the interface a custom destination kind implements.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from ingestd.model import Job

PULL_KINDS = frozenset({"inbox"})
"""Destination kinds whose deliveries consumers pull (GET /inbox); workers never push them."""


class Attempt(msgspec.Struct, frozen=True, kw_only=True):
    """What one delivery attempt reported."""

    ok: bool
    error: str | None = None
    status_code: int | None = None
    permanent: bool = False
    """Retrying cannot help (e.g. 400 from SendGrid): dead at once."""
    retry_after: float | None = None
    """Seconds the receiver asked us to wait (Retry-After)."""
    disable: bool = False
    """The receiver said it is gone (410): disable the destination."""
    headers: dict[str, str] | None = None
    """The response's headers, for the attempt log (which masks credentials)."""
    body: bytes | None = None
    """The start of the response's body (or an SMTP reply's text), for the attempt log."""


class Destination(Protocol):
    """A place events are delivered to."""

    async def deliver(self, job: Job) -> Attempt: ...

    async def close(self) -> None: ...
