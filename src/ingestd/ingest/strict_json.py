"""Duplicate member names in a request body are refused: `{"source":"a","source":"b"}`
means different things to different parsers, so it is a 400, never a silent last-wins.

msgspec (the fast path's decoder) keeps the last duplicate without a word, and checking
every object in Python would cost several times the decode. Instead, count colons: JSON
has colons only between a member name and its value, or inside strings. Re-encoding the
decoded document writes one colon per member it kept and the same colons inside strings,
so the raw body holds more colons exactly when a duplicate member was dropped. The one
exception is a colon written as an escape (\\u003a) inside a string; a body with such an
escape gets the exact (slow) check instead. Cost: one encode and two byte counts; the
encoding's length is returned, so a batch knows every event's compact size is within it.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from ingestd.errors import MalformedBody

_encode = msgspec.json.encode


class _Duplicate(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _Duplicate(name)
            seen.add(name)
    return obj


def duplicate_member(body: bytes) -> str | None:
    """The first member name that occurs twice in one object of `body` (valid JSON)."""
    try:
        json.loads(body, object_pairs_hook=_pairs)
    except _Duplicate as exc:
        return exc.name
    except RecursionError:  # deeper than json's stack: the depth check refuses it anyway
        return None
    return None


def check_unique(body: bytes, doc: Any) -> int:
    """Raise MalformedBody if `doc` (decoded from `body`) lost a duplicate member; else
    return the length of `doc` as compact JSON (each member's encoding is a part of it)."""
    compact = _encode(doc)
    if b"\\u003" not in body and body.count(b":") == compact.count(b":"):
        return len(compact)  # no escaped colon (\u003a) could hide a dropped member
    name = duplicate_member(body)
    if name is not None:
        raise MalformedBody(
            f"member name {name!r} occurs twice in one JSON object; send each name once"
        )
    return len(compact)
