"""The pull inbox as a destination kind: its deliveries wait in the store until a
consumer leases them through `GET /inbox/{name}` (see api/inbox.py).

The worker's gate keeps this kind out of the push path; `deliver` is only a guard.
"""

from __future__ import annotations

from ingestd.config import DestinationConfig, Settings
from ingestd.delivery import Attempt
from ingestd.model import Job


class InboxDestination:
    """Holds events for pull consumers."""

    runs_operator_code = False

    def __init__(self, config: DestinationConfig, settings: Settings | None = None) -> None:
        self.name = config.name

    async def deliver(self, job: Job) -> Attempt:
        return Attempt(ok=False, error=f"{self.name!r} is an inbox: events are pulled, not pushed")

    async def close(self) -> None:
        return None
