"""The quick start's handler destination: ingestd calls `record` with every event."""

from __future__ import annotations

import logging

from ingestd.model import Event

log = logging.getLogger("audit")


def record(event: Event) -> None:
    """Runs in a worker thread; raising an exception makes ingestd retry it later."""
    log.warning("audit: %s %s from %s", event.type, event.id, event.source)
