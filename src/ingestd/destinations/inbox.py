"""The pull inbox as a destination kind: its deliveries wait in the store until a
consumer leases them through `GET /inbox/{name}` (see api/inbox.py).

The worker's gate keeps this kind out of the push path; `deliver` is only a guard.
"""

from __future__ import annotations

from ingestd.config import DestinationConfig, Settings
from ingestd.destinations.base import Attempt
from ingestd.destinations.options import number
from ingestd.model import Job


class InboxDestination:
    """Holds events for pull consumers."""

    runs_operator_code = False
    OPTIONS = frozenset({"visibility"})

    def __init__(self, config: DestinationConfig, settings: Settings | None = None) -> None:
        self.name = config.name
        default = settings.inbox_visibility if settings is not None else 30.0
        self.visibility = number(
            config.options(), "visibility", default, low=0.001, high=43200, destination=self.name
        )
        """Seconds a leased event stays hidden (the `visibility` query parameter wins)."""

    async def deliver(self, job: Job) -> Attempt:
        return Attempt(ok=False, error=f"{self.name!r} is an inbox: events are pulled, not pushed")

    async def close(self) -> None:
        return None
