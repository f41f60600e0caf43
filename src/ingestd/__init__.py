"""ingestd: an event-ingestion gateway whose 202 means durable."""

from ingestd.errors import IngestdError
from ingestd.model import AcceptOutcome, Event, OutcomeKind

__version__ = "0.1.0"

__all__ = ["AcceptOutcome", "Event", "IngestdError", "OutcomeKind", "__version__"]
