"""What the SDK adds to an event before its first attempt: an id, a time, its JSON bytes.

They are fixed once, so every retry sends the same bytes and the server deduplicates it
on `source:id` (a changed payload under the same key would be refused as a mismatch).
"""

from __future__ import annotations

import os
import time
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder()
_LOW62 = (1 << 62) - 1
ID_FIELDS = ("id", "event_id")
TIME_FIELDS = ("occurred_at", "timestamp")


def new_event_id(at: float | None = None) -> str:
    """A UUIDv7 (RFC 9562) string whose time part is `at` (seconds), default now.

    74 random bits from one os.urandom call (two SystemRandom draws cost twice as much)."""
    ms = int((time.time() if at is None else at) * 1000)
    r = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((r >> 68) << 64) | (0b10 << 62) | (r & _LOW62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_second: tuple[int, str] = (-1, "")
"""The last whole second formatted, with its text (one tuple: replaced atomically)."""


def rfc3339(at: float) -> str:
    """`at` (Unix seconds) as an RFC 3339 UTC timestamp with microseconds."""
    global _second
    whole = int(at)
    micros = round((at - whole) * 1_000_000)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    cached, text = _second
    if cached != whole:  # strftime costs ~2 µs; most calls fall in the same second
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second = (whole, text)
    return f"{text}.{micros:06d}Z"


def stamp(fields: dict[str, Any], emitted_at: float) -> str:
    """Give the event (in place) an id, and the emit time; return its id.

    An event the caller named keeps its id and gets no time from us: the caller may emit
    it again, and the server only calls it a duplicate if the payload is the same (a time
    we added would differ).
    """
    event_id = next((fields[f] for f in ID_FIELDS if fields.get(f) is not None), None)
    if event_id is None:
        event_id = fields["id"] = new_event_id(emitted_at)
        if all(fields.get(f) is None for f in TIME_FIELDS):
            fields["occurred_at"] = rfc3339(emitted_at)
    return str(event_id)


def prepare(fields: dict[str, Any], emitted_at: float) -> tuple[str, bytes]:
    """stamp() the event, then return (id, JSON bytes).

    Raises TypeError, ValueError or OverflowError if the event is not JSON.
    """
    return stamp(fields, emitted_at), _encoder.encode(fields)


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def batch_body(events: list[bytes]) -> bytes:
    """The body of POST /ingest/batch from already encoded events."""
    return b'{"events":[' + b",".join(events) + b"]}"
