"""The exceptions ingestd raises; each subclass's docstring is its default message.

IngestdError
├── InvalidEvent          (a client's input is wrong: 400/422)
│   └── MalformedBody     (not JSON, bad UTF-8, NaN, too deep: 400)
├── InvalidCursor         (a paging cursor this store did not make: 400)
├── IdempotencyMismatch   (key reused with another payload: 422)
├── EventIdConflict       (id taken by another event: 409)
├── Overloaded            (acceptance queue full: 503)
├── StoreUnavailable      (the store did not answer: 503)
├── SchemaTooNew          (database migrated by newer code)
├── MissingExtra          (an optional dependency is not installed)
└── ConfigError           (settings or TOML are invalid)
"""

from __future__ import annotations


class IngestdError(Exception):
    """ingestd failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class InvalidEvent(IngestdError):
    """The event is invalid."""

    status = 422

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class MalformedBody(InvalidEvent):
    """The body is not valid JSON."""

    status = 400


class InvalidCursor(IngestdError):
    """cursor must be the next_cursor of a previous page."""

    status = 400


class IdempotencyMismatch(IngestdError):
    """This idempotency key was already used with a different payload."""


class EventIdConflict(IngestdError):
    """This event id already belongs to another event."""


class Overloaded(IngestdError):
    """ingestd is accepting more than it can commit; retry shortly."""


class StoreUnavailable(IngestdError):
    """The store is unavailable; the event was not stored."""


class SchemaTooNew(IngestdError):
    """The database was migrated by a newer ingestd; upgrade this one."""


class MissingExtra(IngestdError):
    """An optional dependency is missing."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"{module} is not installed: install ingestd with the '{extra}' extra "
            f"(pip install 'ingestd[{extra}]')"
        )


class ConfigError(IngestdError):
    """The configuration is invalid."""
