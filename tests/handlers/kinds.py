"""A custom destination kind (INGESTD_DESTINATION_KINDS in the tests that use it)."""

from __future__ import annotations

from typing import Any

from handlers.sinks import _log
from ingestd.destinations.base import Attempt


class Recorder:
    """Logs each event id to recorder.log."""

    def __init__(self, config: Any, settings: Any) -> None:
        self.name = config.name

    async def deliver(self, job: Any) -> Attempt:
        _log("recorder.log", job.event.id)
        return Attempt(ok=True)

    async def close(self) -> None:
        return None
