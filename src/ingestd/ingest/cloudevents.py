"""CloudEvents 1.0 over HTTP (structured, batched and binary modes) → the envelope.

`id`, `source`, `type`, `time`, `subject` and `data` map onto the envelope; the
idempotency key is then `source:id`, CloudEvents' own uniqueness rule. The way out (a
stored event as a CloudEvent) is destinations/cloudevents.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from ingestd.errors import InvalidEvent

STRUCTURED = b"application/cloudevents+json"
BATCHED = b"application/cloudevents-batch+json"
REQUIRED = ("id", "source", "type")
BINARY_PREFIX = b"ce-"


def envelope_from_cloudevent(ce: Any, path: str = "$") -> dict[str, Any]:
    """Check a structured-mode CloudEvent and map it onto the envelope's fields."""
    if not isinstance(ce, dict):
        raise InvalidEvent("a CloudEvent must be a JSON object", field=path)
    version = ce.get("specversion")
    if version is None:
        raise InvalidEvent("specversion is required for a CloudEvent", field="specversion")
    if version != "1.0":
        raise InvalidEvent(
            f"unsupported CloudEvents specversion {version!r}; only '1.0' is accepted",
            field="specversion",
        )
    for name in REQUIRED:
        if not isinstance(ce.get(name), str) or not ce[name]:
            raise InvalidEvent(f"CloudEvent attribute {name} is required", field=name)
    if "data_base64" in ce:
        raise InvalidEvent("data_base64 is not supported; send JSON data", field="data_base64")
    envelope: dict[str, Any] = {"id": ce["id"], "source": ce["source"], "type": ce["type"]}
    if ce.get("time") is not None:
        envelope["occurred_at"] = ce["time"]
    if ce.get("subject") is not None:
        envelope["subject"] = ce["subject"]
    if "data" in ce and ce["data"] is not None:
        envelope["data"] = ce["data"]
    return envelope


def is_binary(headers: Mapping[bytes, bytes]) -> bool:
    return b"ce-specversion" in headers


def cloudevent_from_headers(headers: Mapping[bytes, bytes], data: Any) -> dict[str, Any]:
    """A binary-mode CloudEvent: attributes in `ce-*` headers, the body is the data.

    Header values are percent-encoded (HTTP binding §3.1.3.2): `my%20source` is `my source`.
    """
    ce: dict[str, Any] = {
        name[len(BINARY_PREFIX) :].decode("latin-1"): unquote(value.decode("utf-8", "replace"))
        for name, value in headers.items()
        if name.startswith(BINARY_PREFIX)
    }
    ce["data"] = data
    return ce
