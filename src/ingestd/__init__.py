"""ingestd: an event-ingestion gateway whose 202 means durable.

The names a handler or destination author needs: an `Event` arrives in a `Job`; a
`Destination` delivers it and reports an `Attempt`; everything ingestd raises is an
`IngestdError`.
"""

from ingestd.destinations.base import Attempt, Destination
from ingestd.errors import IngestdError
from ingestd.model import Event, Job
from ingestd.version import __version__

__all__ = ["Attempt", "Destination", "Event", "IngestdError", "Job", "__version__"]
