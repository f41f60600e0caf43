"""The tracing port: W3C trace context kept with every event, spans when an adapter is on.

An event stores the trace context of the request that brought it (`Event.trace`: the
`traceparent`, then a space and the `tracestate` when there is one). The worker continues
that trace: each delivery attempt is a child span, and a webhook carries its traceparent.

The default tracer records nothing but still propagates: the stored traceparent is the
caller's, and a delivery sends a child of it with a fresh span id. `ingestd.obs.otel`
is the OpenTelemetry adapter; `install()` puts it (or any `Tracer`) in place. The core
imports only this module, never OpenTelemetry.
"""

from __future__ import annotations

import contextvars
import enum
import random
import re
from collections.abc import Mapping, Sequence
from typing import Protocol

Attribute = str | int | float | bool
PARENT_LEN = 55
"""Length of a version-00 traceparent: the stored form's first part."""
MAX_STATE = 512
"""Longest tracestate kept (W3C: vendors propagate at least 512 characters)."""

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_rand = random.getrandbits
"""Span ids must be unique, not secret: the fast PRNG (reseeded after fork) will do."""

current_trace: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ingestd_current_trace", default=None
)
"""The stored-form context of the span running in this task (a delivery attempt)."""


class Kind(enum.StrEnum):
    """What a span stands for, as OpenTelemetry's SpanKind."""

    SERVER = "server"
    """Answers a request (ingest)."""
    CLIENT = "client"
    """Calls out (a delivery attempt)."""
    INTERNAL = "internal"
    """Work inside the process (a group commit)."""


class Span(Protocol):
    """One unit of work being timed."""

    @property
    def trace(self) -> str | None:
        """This span's context in stored form, to continue the trace from."""

    def set(self, key: str, value: Attribute) -> None:
        """Record an attribute."""

    def fail(self, description: str) -> None:
        """Mark the span as an error."""

    def activate(self) -> None:
        """Make this span current in this task (outgoing calls and logs then carry it)."""

    def end(self) -> None:
        """Finish the span (and deactivate it)."""


class Tracer(Protocol):
    """Makes spans. `enabled` False means `start` is never called on the hot paths."""

    enabled: bool

    def start(
        self,
        name: str,
        parent: str | None,
        kind: Kind,
        attributes: Mapping[str, Attribute] | None = None,
        links: Sequence[str] = (),
    ) -> Span:
        """Start a span: a child of `parent` (stored form) or a new trace's root."""


class NoopTracer:
    """Records nothing; spans are never started because `enabled` is False."""

    enabled = False

    def start(
        self,
        name: str,
        parent: str | None,
        kind: Kind,
        attributes: Mapping[str, Attribute] | None = None,
        links: Sequence[str] = (),
    ) -> Span:
        return PropagatingSpan(parent)


class PropagatingSpan:
    """A span that is not recorded but has a context: a child of its parent."""

    def __init__(self, parent: str | None) -> None:
        self._trace = child(parent) if parent is not None else None
        self._token: contextvars.Token[str | None] | None = None

    @property
    def trace(self) -> str | None:
        return self._trace

    def set(self, key: str, value: Attribute) -> None:
        return None

    def fail(self, description: str) -> None:
        return None

    def activate(self) -> None:
        self._token = current_trace.set(self._trace)

    def end(self) -> None:
        if self._token is not None:
            current_trace.reset(self._token)
            self._token = None


_tracer: Tracer = NoopTracer()


def tracer() -> Tracer:
    """The tracer of this process."""
    return _tracer


def install(new: Tracer) -> Tracer:
    """Put `new` in place; returns the previous tracer (tests restore it)."""
    global _tracer
    previous, _tracer = _tracer, new
    return previous


# -- W3C trace context ------------------------------------------------------------------


def parse(traceparent: str | bytes | None, tracestate: str | bytes | None = None) -> str | None:
    """The stored form of an incoming trace context, or None when it is absent or invalid.

    Invalid traceparents are ignored, as W3C Trace Context §3.2 asks (the trace restarts).
    Versions above 00 are read by their 00 prefix and stored as version 00.
    """
    if not traceparent:
        return None
    if isinstance(traceparent, bytes):
        traceparent = traceparent.decode("latin-1")
    value = traceparent.strip().lower()
    match = _TRACEPARENT.match(value)
    if match is None:
        return None
    version, trace_id, span_id, flags = match.groups()
    if version == "ff" or trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    if version == "00" and len(value) != PARENT_LEN:
        return None
    if len(value) > PARENT_LEN and value[PARENT_LEN] != "-":
        return None
    stored = f"00-{trace_id}-{span_id}-{flags}"
    if tracestate:
        if isinstance(tracestate, bytes):
            tracestate = tracestate.decode("latin-1")
        state = tracestate.strip()
        if state and len(state) <= MAX_STATE and "\n" not in state:
            stored += " " + state
    return stored


def incoming(headers: Mapping[bytes, bytes]) -> str | None:
    """The stored-form trace context of an ASGI request's headers (lower-case names)."""
    value = headers.get(b"traceparent")
    if value is None:
        return None
    return parse(value, headers.get(b"tracestate"))


def traceparent(trace: str) -> str:
    return trace[:PARENT_LEN]


def tracestate(trace: str) -> str | None:
    return trace[PARENT_LEN + 1 :] or None


def trace_id(trace: str) -> str:
    return trace[3:35]


def span_id(trace: str) -> str:
    return trace[36:52]


def new_span_id() -> str:
    while True:
        value = _rand(64)
        if value:
            return f"{value:016x}"


def child(trace: str) -> str:
    """The same trace, flags and state with a new span id: an unrecorded child span."""
    return f"{trace[:36]}{new_span_id()}{trace[52:]}"


def outgoing_headers(trace: str | None) -> dict[str, str]:
    """Headers that carry the trace to a receiver: the running span's context if one is
    active in this task, else a child of the event's stored `trace`, else none."""
    current = current_trace.get()
    if current is None:
        if trace is None:
            return {}
        current = child(trace)
    headers = {"traceparent": current[:PARENT_LEN]}
    if len(current) > PARENT_LEN:
        headers["tracestate"] = current[PARENT_LEN + 1 :]
    return headers


# -- the spans ingestd makes ------------------------------------------------------------


def start_delivery(
    parent: str | None, destination: str, kind: str, attempt: int, delivery_id: str
) -> Span:
    """A delivery attempt's span, child of the ingest span, current in this task."""
    span = _tracer.start(
        "ingestd.deliver",
        parent,
        Kind.CLIENT,
        {
            "ingestd.destination": destination,
            "ingestd.destination.kind": kind,
            "ingestd.attempt": attempt,
            "ingestd.delivery_id": delivery_id,
        },
    )
    span.activate()
    return span


def end_delivery(span: Span, status_code: int | None, verdict: str, error: str | None) -> None:
    if status_code is not None:
        span.set("http.response.status_code", status_code)
    span.set("ingestd.outcome", verdict)
    if error is not None and verdict != "succeeded":
        span.fail(error)
    span.end()


def commit_span(traces: Sequence[str | None], size: int) -> Span:
    """A group commit: child of its first request's span, linked to the others'."""
    parent = traces[0] if traces else None
    seen = {parent}
    links = []
    for trace in traces[1:]:
        if trace not in seen:
            seen.add(trace)
            links.append(trace)
    return _tracer.start(
        "ingestd.commit",
        parent,
        Kind.INTERNAL,
        {"ingestd.group_size": size},
        [t for t in links if t is not None],
    )


Headers = list[tuple[bytes, bytes]]


def start_ingest(headers: Headers, path: str) -> tuple[Span, Headers]:
    """An ingest request's span, child of the caller's traceparent if it sent one.

    Returns the span and the request headers with the caller's trace context replaced by
    the span's: the handler stores what it reads there, so the worker's delivery spans
    become children of this one.
    """
    sent_parent: bytes | None = None
    sent_state: bytes | None = None
    rest: Headers = []
    for name, value in headers:
        if name == b"traceparent":
            sent_parent = value
        elif name == b"tracestate":
            sent_state = value
        else:
            rest.append((name, value))
    span = _tracer.start(
        "ingestd.ingest",
        parse(sent_parent, sent_state),
        Kind.SERVER,
        {"http.request.method": "POST", "http.route": path},
    )
    own = span.trace
    if own is not None:
        rest.append((b"traceparent", traceparent(own).encode()))
        state = tracestate(own)
        if state is not None:
            rest.append((b"tracestate", state.encode("latin-1")))
    return span, rest


def end_ingest(
    span: Span, status: int, counts: Mapping[str, int] | None = None, replayed: bool = False
) -> None:
    """Finish an ingest span: status code, event count and outcome."""
    span.set("http.response.status_code", status)
    if counts is not None:
        span.set("ingestd.events", sum(counts.values()))
        for outcome, count in counts.items():
            span.set(f"ingestd.events.{outcome}", count)
        outcome = "batch"
    else:
        span.set("ingestd.events", 1)
        outcome = _OUTCOMES.get(status, "rejected" if status < 500 else "error")
        if status == 200 and replayed:
            outcome = "duplicate"
    span.set("ingestd.outcome", outcome)
    if status >= 500:
        span.fail(f"HTTP {status}")
    span.end()


_OUTCOMES = {202: "accepted", 200: "processed", 207: "batch", 429: "refused", 503: "refused"}
