"""The fingerprint is canonical (equal payloads in any key order give the same digest) and
stable across versions (it is stored with every key; a changed digest would turn a retry
that spans an upgrade into a 422)."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ingestd.ingest.envelope import decode_json, fingerprint, parse_event

names = st.text(min_size=1, max_size=8)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12).filter(lambda t: "\x00" not in t)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(names, inner, max_size=4),
    max_leaves=20,
)
payloads = st.dictionaries(names, values, max_size=6)


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same JSON value with the members of every object in another order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


@settings(max_examples=300, deadline=None)
@given(data=payloads, seed=st.integers(), event_id=st.none() | st.text(min_size=1, max_size=8))
def test_equal_payloads_in_any_key_order_have_one_fingerprint(
    data: dict[str, Any], seed: int, event_id: str | None
) -> None:
    event: dict[str, Any] = {"source": "shop", "type": "order.paid", "data": data}
    if event_id is not None and "\x00" not in event_id:
        event["id"] = event_id
    rng = random.Random(seed)
    other = shuffled(event, rng)
    assert parse_event(event).fingerprint == parse_event(other).fingerprint
    # and through the wire: the client's JSON text in either order
    text = json.dumps(other).encode()
    assert parse_event(decode_json(text)).fingerprint == parse_event(event).fingerprint


@settings(max_examples=300, deadline=None)
@given(data=payloads, extra=names, value=values)
def test_a_changed_payload_changes_the_fingerprint(
    data: dict[str, Any], extra: str, value: Any
) -> None:
    assume(data.get(extra) != [value])
    event = {"source": "shop", "type": "order.paid", "data": data}
    changed = {**event, "data": {**data, extra: [value]}}  # a value no payload had there
    assert parse_event(event).fingerprint != parse_event(changed).fingerprint


def test_the_digest_is_the_stored_one() -> None:
    """BLAKE2b-128 of the sorted compact JSON, as every version so far has stored it."""
    canonical = {"source": "s", "type": "t", "id": "1", "data": {"b": [1, {"y": 2, "x": 1}]}}
    sorted_json = b'{"data":{"b":[1,{"x":1,"y":2}]},"id":"1","source":"s","type":"t"}'
    assert fingerprint(canonical) == hashlib.blake2b(sorted_json, digest_size=16).digest()
    event = {"source": "s", "type": "t", "id": "1", "occurred_at": "2026-01-01T00:00:00Z"}
    assert parse_event(event).fingerprint.hex() == "de003b72daecd8c9ec973e4a28ab5927"
