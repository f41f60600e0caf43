"""Time-ordered identifiers (UUIDv7, RFC 9562) for events the client did not name."""

from __future__ import annotations

import os
import time


def new_event_id() -> str:
    """A UUIDv7 string: 48 bits of Unix milliseconds, version, 74 random bits."""
    ms = time.time_ns() // 1_000_000
    rand_a = int.from_bytes(os.urandom(2), "big") & 0xFFF
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
