"""The one parser on the fast path: any accepted input shape → a validated Submission.

Hand-written checks on a msgspec-decoded dict: no framework, no model validation layer.
Field aliases (`event_type`, `event_id`, `timestamp`) map onto the envelope; when both
spellings are sent they must agree.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from ingestd.errors import InvalidEvent, MalformedBody
from ingestd.ingest.ids import new_event_id
from ingestd.model import Event, Submission

MAX_DEPTH = 32
MAX_TEXT = 256
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
ALIASES = (("type", "event_type"), ("id", "event_id"), ("occurred_at", "timestamp"))
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
_decoder = msgspec.json.Decoder()
_canonical = msgspec.json.Encoder(order="sorted")
_digest = hashlib.blake2b(digest_size=16)
"""An empty 16-byte BLAKE2b to copy: a copy costs less than parsing `digest_size` again."""


def decode_json(body: bytes) -> Any:
    """Decode a request body; anything that is not strict JSON is a MalformedBody."""
    try:
        return _decoder.decode(body)
    except UnicodeDecodeError as exc:
        raise MalformedBody(f"body is not valid UTF-8: {exc.reason}") from None
    except RecursionError:
        raise MalformedBody(f"JSON nesting is deeper than {MAX_DEPTH} levels") from None
    except msgspec.ValidationError as exc:  # e.g. 1e999
        raise MalformedBody(f"invalid JSON number: {exc}") from None
    except msgspec.DecodeError as exc:
        raise MalformedBody(f"malformed JSON: {exc}") from None


_second: tuple[int, str] = (0, "")


def utc_now(now: float | None = None) -> str:
    """Now (or `now`, epoch seconds) as RFC 3339 UTC with microseconds; the seconds part is
    formatted once a second."""
    global _second
    if now is None:
        now = time.time()
    whole = int(now)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int((now - whole) * 1_000_000):06d}Z"


def format_time(value: datetime) -> str:
    """RFC 3339 UTC with microseconds; years are zero-padded (strftime's %Y is not)."""
    v = value.astimezone(UTC)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
        f".{v.microsecond:06d}Z"
    )


def parse_time(value: Any, field: str) -> str:
    """Validate an RFC 3339 timestamp and normalize it to UTC with microseconds."""
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise InvalidEvent(
            f"{field} must be an RFC 3339 timestamp such as 2026-01-31T12:00:00Z",
            field=field,
        )
    text = value.replace("t", "T").replace("z", "Z").replace(" ", "T")
    # Python's parser takes at most 6 fractional digits.
    if "." in text:
        head, _, tail = text.partition(".")
        digits = len(tail) - len(tail.lstrip("0123456789"))
        text = head + "." + tail[: min(digits, 6)] + tail[digits:]
    try:
        return format_time(datetime.fromisoformat(text))
    except (ValueError, OverflowError) as exc:
        raise InvalidEvent(f"{field} is not a valid time: {exc}", field=field) from None


def _text(obj: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise InvalidEvent(f"{name} is required", field=name)
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise InvalidEvent(
            f"{name} must be a non-empty string of at most {MAX_TEXT} characters", field=name
        )
    if "\x00" in value:  # PostgreSQL text cannot hold NUL; refuse it on every backend
        raise InvalidEvent(f"{name} must not contain NUL characters", field=name)
    return value


def check_value(value: Any, path: str, depth: int = 1) -> None:
    """Reject nesting deeper than MAX_DEPTH and integers outside the 64-bit range."""
    if depth > MAX_DEPTH:
        raise InvalidEvent(f"nesting is deeper than {MAX_DEPTH} levels", field=path)
    if isinstance(value, dict):
        pairs: Any = value.items()
        keyed = True
    elif isinstance(value, list):
        pairs = enumerate(value)
        keyed = False
    else:
        return
    for key, item in pairs:
        # exact-type tests first: one event's data is checked on every request
        kind = type(item)
        if kind is str or kind is float or kind is bool or item is None:
            continue
        if kind is int:
            if INT64_MIN <= item <= INT64_MAX:
                continue
            field = f"{path}.{key}" if keyed else f"{path}[{key}]"
            raise InvalidEvent("integer outside the 64-bit range", field=field)
        if isinstance(item, dict | list):
            check_value(item, f"{path}.{key}" if keyed else f"{path}[{key}]", depth + 1)
        elif isinstance(item, int) and not INT64_MIN <= item <= INT64_MAX:
            field = f"{path}.{key}" if keyed else f"{path}[{key}]"
            raise InvalidEvent("integer outside the 64-bit range", field=field)


def _unalias(obj: Mapping[str, Any]) -> dict[str, Any]:
    fields = dict(obj)
    for name, alias in ALIASES:
        if alias in fields:
            value = fields.pop(alias)
            if name in fields and fields[name] != value:
                raise InvalidEvent(f"{name} and {alias} disagree; send one of them", field=alias)
            fields.setdefault(name, value)
    return fields


def fingerprint(canonical: Mapping[str, Any]) -> bytes:
    """A digest of the canonical payload: what 'the same payload' means for idempotency.

    BLAKE2b-128 of the mapping as JSON with every object's keys sorted. Stored with each
    key, so it must not change between versions: a retry that spans an upgrade would be
    refused as a different payload (tests/unit/test_fingerprint_property.py pins it)."""
    digest = _digest.copy()
    digest.update(_canonical.encode(canonical))
    return digest.digest()


def parse_event(
    obj: Any,
    *,
    idempotency_key: str | None = None,
    default_source: str | None = None,
    derive_key: Mapping[str, Sequence[str]] | None = None,
    tenant_id: str = "default",
    received_at: float = 0.0,
    trace: str | None = None,
    default_time: str | None = None,
) -> Submission:
    """Validate one event object and build what the store needs to accept it.

    `default_time` is the occurred_at of an event that has none: a batch formats its
    receive time once for all of its events (otherwise `received_at`, or now, formatted)."""
    if not isinstance(obj, dict):
        raise InvalidEvent("an event must be a JSON object", field="$")
    fields = _unalias(obj)
    source = _text(fields, "source") or default_source
    if source is None:
        raise InvalidEvent("source is required", field="source")
    event_type = _text(fields, "type")
    event_id = _text(fields, "id")
    actor_id = _text(fields, "actor_id")
    subject = _text(fields, "subject")
    raw_time = fields.get("occurred_at")
    occurred_at = parse_time(raw_time, "occurred_at") if raw_time is not None else None
    data = fields.get("data", {})
    if not isinstance(data, dict):
        raise InvalidEvent("data must be a JSON object", field="data")
    check_value(data, "data")
    canonical = {
        "source": source,
        "type": event_type,
        "id": event_id,
        "occurred_at": occurred_at,
        "actor_id": actor_id,
        "subject": subject,
        "data": data,
    }
    key: str | None
    if idempotency_key is not None:
        if not idempotency_key or len(idempotency_key) > MAX_TEXT:
            raise InvalidEvent(
                f"Idempotency-Key must be 1 to {MAX_TEXT} characters", field="Idempotency-Key"
            )
        key = idempotency_key
    elif event_id is not None:
        key = f"{source}:{event_id}"
    elif derive_key and source in derive_key:
        parts = [canonical.get(name) for name in derive_key[source]]
        if any(part is None for part in parts):
            missing = [n for n, p in zip(derive_key[source], parts, strict=True) if p is None]
            raise InvalidEvent(
                f"source {source!r} derives its idempotency key from {missing}, which are missing",
                field=missing[0],
            )
        key = ":".join(str(part) for part in parts)
    else:
        key = None
    event = Event(
        id=event_id or new_event_id(),
        source=source,
        type=event_type,
        occurred_at=occurred_at or default_time or utc_now(received_at or None),
        data=data,
        actor_id=actor_id,
        subject=subject,
        tenant_id=tenant_id,
        received_at=received_at,
        trace=trace,
    )
    return Submission(
        event=event,
        idempotency_key=key,
        scope=source,
        fingerprint=fingerprint(canonical),
        client_id=event_id is not None,
        key_is_id=idempotency_key is None and event_id is not None,
    )
