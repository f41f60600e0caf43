"""The exceptions ingestd raises; each subclass's docstring is its default message.

IngestdError
├── InvalidEvent          (a client's event is wrong)
│   └── MalformedBody     (not JSON, bad UTF-8, NaN, too deep)
├── InvalidCursor         (a paging cursor this store did not make)
├── InvalidRequest        (an administration request is wrong)
│   ├── InvalidDestination   (a destination config that cannot be built)
│   └── InvalidSelection     (a dead-letter selection or filter that is wrong)
├── NotFound              (no such thing)
│   ├── DestinationNotFound
│   └── DeadLetterNotFound
├── DestinationExists     (the name is taken)
├── IdempotencyMismatch   (key reused with another payload)
├── EventIdConflict       (id taken by another event)
├── Overloaded            (acceptance queue full)
├── StoreUnavailable      (the store did not answer; nothing was written)
│   └── OutcomeUnknown    (a commit failed after it may have reached the disk)
├── SchemaTooNew          (database migrated by newer code)
├── MissingExtra          (an optional dependency is not installed)
└── ConfigError           (settings or TOML are invalid)

They say what went wrong, not how to answer it: the HTTP status and problem type of each
are the HTTP layer's (api/problems.py).
"""

from __future__ import annotations


class IngestdError(Exception):
    """ingestd failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class InvalidEvent(IngestdError):
    """The event is invalid."""

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class MalformedBody(InvalidEvent):
    """The body is not valid JSON."""


class InvalidCursor(IngestdError):
    """cursor must be the next_cursor of a previous page."""


class InvalidRequest(IngestdError):
    """The request is invalid."""

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class InvalidDestination(InvalidRequest):
    """The destination is invalid."""


class InvalidSelection(InvalidRequest):
    """Give ids, event_ids, a filter (destination, event_type, since, until) or all."""


class NotFound(IngestdError):
    """Not found."""


class DestinationNotFound(NotFound):
    """No such destination."""


class DeadLetterNotFound(NotFound):
    """No such dead delivery."""

    def __init__(
        self,
        message: str | None = None,
        *,
        field: str | None = None,
        unknown: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.field = field
        self.unknown = unknown
        """The ids that matched nothing, when a request named several."""


class DestinationExists(IngestdError):
    """A destination of this name exists."""


class IdempotencyMismatch(IngestdError):
    """This idempotency key was already used with a different payload."""


class EventIdConflict(IngestdError):
    """This event id already belongs to another event."""


class Overloaded(IngestdError):
    """ingestd is accepting more than it can commit; retry shortly."""


class StoreUnavailable(IngestdError):
    """The store is unavailable; the event was not stored."""


class OutcomeUnknown(StoreUnavailable):
    """The commit failed after it may have reached the disk: the events may have been
    stored. Retrying with the same event ids or Idempotency-Key is safe."""


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
