"""A stored event as a structured-mode CloudEvent 1.0, for webhooks that opt into it.

The way in (CloudEvents → envelope) is ingest/cloudevents.py.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ingestd.model import Event

UNTYPED = "ingestd.untyped"
"""The CloudEvent `type` of an event stored without one (CloudEvents requires a type)."""
_encode = msgspec.json.encode


def structured_cloudevent(event: Event) -> bytes:
    """A stored event as a structured-mode CloudEvent (`application/cloudevents+json`)."""
    ce: dict[str, Any] = {
        "specversion": "1.0",
        "id": event.id,
        "source": event.source,
        "type": event.type or UNTYPED,
        "time": event.occurred_at,
        "datacontenttype": "application/json",
        "data": event.data,
    }
    if event.subject is not None:
        ce["subject"] = event.subject
    if event.actor_id is not None:
        ce["actorid"] = event.actor_id  # extension names are lower-case alphanumerics
    return _encode(ce)
