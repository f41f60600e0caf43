"""Server-made event ids: UUIDv7 (RFC 9562), time-ordered."""

from __future__ import annotations

import re
import uuid

import pytest

from ingestd.ingest import ids
from ingestd.ingest.ids import new_event_id

FORMAT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def test_format_version_and_variant() -> None:
    for _ in range(200):
        text = new_event_id()
        assert FORMAT.match(text), text
        value = uuid.UUID(text)
        assert value.version == 7
        assert value.variant == uuid.RFC_4122
        assert str(value) == text


def test_timestamp_is_unix_milliseconds(monkeypatch: pytest.MonkeyPatch) -> None:
    ms = 1_769_860_800_123  # 2026-01-31T12:00:00.123Z
    monkeypatch.setattr(ids.time, "time_ns", lambda: ms * 1_000_000 + 999_999)
    value = uuid.UUID(new_event_id())
    assert value.int >> 80 == ms


def test_ids_sort_by_creation_time(monkeypatch: pytest.MonkeyPatch) -> None:
    made = []
    for ms in (1_700_000_000_000, 1_700_000_000_001, 1_700_000_060_000, 1_800_000_000_000):
        monkeypatch.setattr(ids.time, "time_ns", lambda ms=ms: ms * 1_000_000)
        made += [new_event_id() for _ in range(20)]
    # Across milliseconds the text order is the time order (ids in one ms are random).
    assert [uuid.UUID(i).int >> 80 for i in sorted(made)] == sorted(
        uuid.UUID(i).int >> 80 for i in made
    )
    firsts = made[::20]
    assert firsts == sorted(firsts)


def test_ids_in_the_same_millisecond_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ids.time, "time_ns", lambda: 1_700_000_000_000_000_000)
    made = {new_event_id() for _ in range(5000)}
    assert len(made) == 5000


def test_random_bits_are_used() -> None:
    # 74 random bits: after masking out time, version and variant, values vary widely.
    rand = {uuid.UUID(new_event_id()).int & ((1 << 62) - 1) for _ in range(100)}
    assert len(rand) == 100
