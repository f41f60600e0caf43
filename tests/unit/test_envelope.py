"""The fast-path parser: input shapes, validation with field paths, keys and fingerprints."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ingestd.api.problems import answer_for
from ingestd.errors import InvalidEvent, MalformedBody
from ingestd.ingest.envelope import (
    MAX_DEPTH,
    MAX_TEXT,
    check_value,
    decode_json,
    fingerprint,
    parse_event,
    parse_time,
)

UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def nested(depth: int) -> dict[str, Any]:
    """A dict that is `depth` levels deep (a flat dict is 1)."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


def invalid(obj: Any, **kwargs: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        parse_event(obj, **kwargs)
    return info.value


# -- decoding --------------------------------------------------------------------------


def test_decode_json_accepts_strict_json() -> None:
    assert decode_json(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b'{"a": 1,}',
        b"{'a': 1}",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        b'{"a": 1e999}',
        b'{"a": "\xff"}',
        b'{"a": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8
        rb'{"a": "\ud800"}',
        rb'{"a": "\udc00x"}',
        rb'{"\ud800": 1}',
        b"[" * 5000 + b"]" * 5000,
    ],
)
def test_decode_json_refuses_what_is_not_strict_json(body: bytes) -> None:
    with pytest.raises(MalformedBody) as info:
        decode_json(body)
    assert answer_for(info.value)[0] == 400
    assert str(info.value)


def test_decode_json_keeps_valid_surrogate_pairs() -> None:
    assert decode_json(rb'{"a": "\ud83d\ude00"}') == {"a": "\U0001f600"}


# -- the envelope ----------------------------------------------------------------------


def test_minimal_event_gets_a_uuid7_and_defaults() -> None:
    sub = parse_event({"source": "shop"}, received_at=12.5)
    event = sub.event
    assert event.source == "shop"
    assert event.type is None  # type is optional
    assert UUID7.match(event.id)
    assert event.data == {}
    assert event.tenant_id == "default"
    assert event.received_at == 12.5
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$", event.occurred_at)
    assert sub.idempotency_key is None
    assert sub.client_id is False
    assert sub.scope == "shop"


def test_full_event_is_kept() -> None:
    sub = parse_event(
        {
            "id": "evt-1",
            "source": "shop",
            "type": "order.created",
            "occurred_at": "2026-01-31T12:00:00+01:00",
            "actor_id": "u1",
            "subject": "order/7",
            "data": {"total": 12, "items": [{"sku": "a"}]},
            "unknown": "ignored",
        }
    )
    e = sub.event
    assert (e.id, e.source, e.type, e.actor_id, e.subject) == (
        "evt-1",
        "shop",
        "order.created",
        "u1",
        "order/7",
    )
    assert e.occurred_at == "2026-01-31T11:00:00.000000Z"
    assert e.data == {"total": 12, "items": [{"sku": "a"}]}
    assert sub.client_id is True


def test_aliases_map_onto_the_envelope() -> None:
    sub = parse_event(
        {
            "source": "legacy",
            "event_type": "user.signup",
            "event_id": "abc",
            "timestamp": "2026-01-31T12:00:00Z",
        }
    )
    assert sub.event.type == "user.signup"
    assert sub.event.id == "abc"
    assert sub.event.occurred_at == "2026-01-31T12:00:00.000000Z"
    assert sub.idempotency_key == "legacy:abc"


def test_alias_and_name_may_both_be_sent_when_they_agree() -> None:
    sub = parse_event({"source": "s", "type": "t", "event_type": "t"})
    assert sub.event.type == "t"


@pytest.mark.parametrize(
    ("name", "alias", "a", "b"),
    [
        ("type", "event_type", "t1", "t2"),
        ("id", "event_id", "i1", "i2"),
        ("occurred_at", "timestamp", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"),
    ],
)
def test_alias_disagreeing_with_its_name_is_refused(name: str, alias: str, a: str, b: str) -> None:
    exc = invalid({"source": "s", name: a, alias: b})
    assert exc.field == alias
    assert answer_for(exc)[0] == 422


def test_default_source_fills_in() -> None:
    assert parse_event({}, default_source="key-source").event.source == "key-source"
    assert parse_event({"source": "mine"}, default_source="other").event.source == "mine"


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        ([], "$"),
        ("event", "$"),
        (None, "$"),
        (7, "$"),
        ({}, "source"),
        ({"source": None}, "source"),
        ({"source": ""}, "source"),
        ({"source": 5}, "source"),
        ({"source": ["a"]}, "source"),
        ({"source": "x" * (MAX_TEXT + 1)}, "source"),
        ({"source": "s", "type": ""}, "type"),
        ({"source": "s", "type": 1}, "type"),
        ({"source": "s", "id": ""}, "id"),
        ({"source": "s", "id": {"a": 1}}, "id"),
        ({"source": "s", "actor_id": 3}, "actor_id"),
        ({"source": "s", "subject": False}, "subject"),
        ({"source": "s", "data": []}, "data"),
        ({"source": "s", "data": "text"}, "data"),
        ({"source": "s", "data": 1}, "data"),
        ({"source": "s", "occurred_at": "yesterday"}, "occurred_at"),
        ({"source": "s", "occurred_at": 1700000000}, "occurred_at"),
        ({"source": "s", "occurred_at": "2026-02-30T00:00:00Z"}, "occurred_at"),
        ({"source": "s", "occurred_at": "2026-01-01T24:00:00Z"}, "occurred_at"),
        ({"source": "s", "occurred_at": "2026-01-01T00:00:00"}, "occurred_at"),
        ({"source": "s", "occurred_at": "2026-01-01"}, "occurred_at"),
        ({"source": "s", "timestamp": "not a time"}, "occurred_at"),
        ({"source": "s", "data": {"n": 2**63}}, "data.n"),
        ({"source": "s", "data": {"n": -(2**63) - 1}}, "data.n"),
        ({"source": "s", "data": {"a": {"b": [1, 2**64]}}}, "data.a.b[1]"),
        ({"source": "s", "data": {"a": [[2**100]]}}, "data.a[0][0]"),
    ],
)
def test_invalid_events_name_the_field(obj: Any, field: str) -> None:
    exc = invalid(obj)
    assert exc.field == field
    assert answer_for(exc)[0] == 422
    assert str(exc)


def test_64_bit_integers_at_the_edges_are_accepted() -> None:
    data = {"max": 2**63 - 1, "min": -(2**63), "list": [2**63 - 1]}
    assert parse_event({"source": "s", "data": data}).event.data == data


def test_nesting_within_the_limit_is_accepted() -> None:
    data = nested(MAX_DEPTH - 4)
    assert parse_event({"source": "s", "data": data}).event.data == data


@pytest.mark.parametrize("depth", [MAX_DEPTH + 2, 100])
def test_nesting_beyond_the_limit_is_refused(depth: int) -> None:
    exc = invalid({"source": "s", "data": nested(depth)})
    assert exc.field is not None
    assert exc.field.startswith("data.n")
    assert "deeper" in str(exc)


def test_deep_lists_count_as_nesting() -> None:
    value: Any = 1
    for _ in range(MAX_DEPTH + 5):
        value = [value]
    with pytest.raises(InvalidEvent):
        check_value({"x": value}, "data")


# -- times -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("2026-01-31T12:00:00Z", "2026-01-31T12:00:00.000000Z"),
        ("2026-01-31t12:00:00z", "2026-01-31T12:00:00.000000Z"),
        ("2026-01-31 12:00:00+02:00", "2026-01-31T10:00:00.000000Z"),
        ("2026-01-31T12:00:00.5Z", "2026-01-31T12:00:00.500000Z"),
        ("2026-01-31T12:00:00.123456789-00:30", "2026-01-31T12:30:00.123456Z"),
        ("2024-02-29T23:59:59Z", "2024-02-29T23:59:59.000000Z"),
    ],
)
def test_rfc3339_times_are_normalized_to_utc(text: str, normalized: str) -> None:
    assert parse_time(text, "occurred_at") == normalized


@pytest.mark.parametrize("text", ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"])
def test_times_out_of_range_after_utc_conversion_are_invalid(text: str) -> None:
    with pytest.raises(InvalidEvent) as info:
        parse_time(text, "occurred_at")
    assert info.value.field == "occurred_at"


def test_years_before_1000_stay_rfc3339() -> None:
    assert parse_time("0999-01-01T00:00:00Z", "occurred_at") == "0999-01-01T00:00:00.000000Z"


# -- idempotency keys --------------------------------------------------------------------


def test_header_key_wins_over_the_id() -> None:
    sub = parse_event({"source": "s", "id": "e1"}, idempotency_key="K")
    assert sub.idempotency_key == "K"
    assert sub.scope == "s"
    assert sub.event.id == "e1"


def test_id_makes_the_key_source_colon_id() -> None:
    assert parse_event({"source": "s", "id": "e1"}).idempotency_key == "s:e1"


@pytest.mark.parametrize("key", ["", "k" * (MAX_TEXT + 1)])
def test_bad_header_keys_are_refused(key: str) -> None:
    exc = invalid({"source": "s"}, idempotency_key=key)
    assert exc.field == "Idempotency-Key"


def test_key_derived_from_fields_per_source() -> None:
    derive = {"billing": ["type", "subject"]}
    sub = parse_event(
        {"source": "billing", "type": "invoice.paid", "subject": "inv-9"}, derive_key=derive
    )
    assert sub.idempotency_key == "invoice.paid:inv-9"
    # Other sources are not affected.
    assert parse_event({"source": "other", "type": "x"}, derive_key=derive).idempotency_key is None
    exc = invalid({"source": "billing", "type": "invoice.paid"}, derive_key=derive)
    assert exc.field == "subject"


# -- fingerprints ------------------------------------------------------------------------


def fp(obj: dict[str, Any], **kwargs: Any) -> bytes:
    return parse_event(obj, **kwargs).fingerprint


def test_fingerprint_ignores_key_order_at_every_level() -> None:
    a = {"source": "s", "type": "t", "data": {"a": 1, "b": {"x": 1, "y": [1, {"p": 1, "q": 2}]}}}
    b = {"data": {"b": {"y": [1, {"q": 2, "p": 1}], "x": 1}, "a": 1}, "type": "t", "source": "s"}
    assert fp(a) == fp(b)


def test_fingerprint_ignores_alias_spelling_and_time_notation() -> None:
    a = {"source": "s", "type": "t", "id": "1", "occurred_at": "2026-01-01T01:00:00+01:00"}
    b = {"source": "s", "event_type": "t", "event_id": "1", "timestamp": "2026-01-01T00:00:00Z"}
    assert fp(a) == fp(b)


def test_fingerprint_is_stable_when_occurred_at_defaults_to_now() -> None:
    # A retried request without occurred_at is the same payload, whenever it arrives.
    assert fp({"source": "s", "data": {"a": 1}}) == fp({"source": "s", "data": {"a": 1}})


def test_fingerprint_does_not_depend_on_the_key() -> None:
    assert fp({"source": "s"}, idempotency_key="a") == fp({"source": "s"}, idempotency_key="b")


def test_missing_data_is_the_same_as_empty_data() -> None:
    assert fp({"source": "s"}) == fp({"source": "s", "data": {}})


@pytest.mark.parametrize(
    "change",
    [
        {"data": {"a": 2}},
        {"data": {"a": 1, "b": None}},
        {"data": {"a": "1"}},
        {"data": {"a": [1]}},
        {"type": "u"},
        {"source": "r"},
        {"actor_id": "someone"},
        {"subject": "thing"},
        {"occurred_at": "2026-01-01T00:00:00Z"},
        {"id": "other"},
    ],
)
def test_fingerprint_changes_with_any_field(change: dict[str, Any]) -> None:
    base = {"source": "s", "type": "t", "data": {"a": 1}}
    assert fp(base) != fp({**base, **change})


def test_fingerprint_is_a_function_of_the_canonical_mapping() -> None:
    canonical = {"source": "s", "type": None, "data": {"b": 1, "a": 2}}
    assert fingerprint(canonical) == fingerprint(dict(reversed(list(canonical.items()))))
    assert len(fingerprint(canonical)) == 16


@pytest.mark.parametrize("field", ["id", "source", "type", "actor_id", "subject"])
def test_nul_in_an_envelope_string_is_invalid(field: str) -> None:
    doc = {"source": "s", "type": "t", "id": "e", field: "a\x00b"}
    with pytest.raises(InvalidEvent) as info:
        parse_event(doc)
    assert info.value.field == field
