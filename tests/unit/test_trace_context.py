"""W3C trace context parsing and propagation with the default (no-op) tracer."""

from __future__ import annotations

import asyncio

import pytest

from ingestd.obs import tracing

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"


def test_a_valid_traceparent_is_stored_as_sent() -> None:
    assert tracing.parse(PARENT) == PARENT
    assert tracing.parse(PARENT.encode()) == PARENT
    assert tracing.parse(PARENT.upper()) == PARENT


def test_tracestate_follows_the_traceparent_after_a_space() -> None:
    stored = tracing.parse(PARENT, b"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    assert stored is not None
    assert tracing.traceparent(stored) == PARENT
    assert tracing.tracestate(stored) == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    assert tracing.tracestate(PARENT) is None


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        f"00-{TRACE_ID}-b7ad6b7169203331",  # no flags
        f"00-{'0' * 32}-b7ad6b7169203331-01",  # all-zero trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE_ID}-b7ad6b7169203331-01",  # forbidden version
        f"00-{TRACE_ID}-b7ad6b7169203331-01-extra",  # version 00 has nothing after flags
        f"00-{TRACE_ID[:-1]}x-b7ad6b7169203331-01",
    ],
)
def test_invalid_traceparents_are_ignored(value: str) -> None:
    assert tracing.parse(value) is None


def test_a_future_version_is_read_by_its_00_prefix() -> None:
    assert tracing.parse(f"cc-{TRACE_ID}-b7ad6b7169203331-01-more") == PARENT


def test_an_oversized_tracestate_is_dropped_not_the_trace() -> None:
    assert tracing.parse(PARENT, "k=" + "v" * 600) == PARENT


def test_incoming_reads_asgi_headers() -> None:
    headers = {b"traceparent": PARENT.encode(), b"tracestate": b"a=1"}
    assert tracing.incoming(headers) == PARENT + " a=1"
    assert tracing.incoming({b"tracestate": b"a=1"}) is None


def test_child_keeps_trace_flags_and_state_with_a_new_span_id() -> None:
    stored = PARENT + " a=1"
    kids = {tracing.child(stored) for _ in range(50)}
    assert len(kids) == 50
    for kid in kids:
        assert tracing.trace_id(kid) == TRACE_ID
        assert tracing.span_id(kid) != "b7ad6b7169203331"
        assert kid[52:] == "-01 a=1"
        assert tracing.parse(tracing.traceparent(kid), tracing.tracestate(kid)) == kid


def test_outgoing_headers_continue_the_stored_trace() -> None:
    assert tracing.outgoing_headers(None) == {}
    headers = tracing.outgoing_headers(PARENT + " a=1")
    assert set(headers) == {"traceparent", "tracestate"}
    assert tracing.trace_id(headers["traceparent"]) == TRACE_ID
    assert tracing.span_id(headers["traceparent"]) != tracing.span_id(PARENT)
    assert headers["tracestate"] == "a=1"


async def test_an_active_span_is_what_outgoing_calls_carry() -> None:
    span = tracing.PropagatingSpan(PARENT)
    span.activate()
    try:
        sent = tracing.outgoing_headers(PARENT)
        assert sent == {"traceparent": span.trace}
    finally:
        span.end()
    assert tracing.current_trace.get() is None


async def test_the_current_span_is_per_task() -> None:
    seen: dict[str, str | None] = {}

    async def deliver(name: str) -> None:
        span = tracing.PropagatingSpan(PARENT)
        span.activate()
        await asyncio.sleep(0)
        seen[name] = tracing.current_trace.get()
        assert seen[name] == span.trace
        span.end()

    await asyncio.gather(deliver("a"), deliver("b"))
    assert seen["a"] != seen["b"]
    assert tracing.current_trace.get() is None


def test_the_default_tracer_is_off() -> None:
    assert tracing.tracer().enabled is False


def test_start_ingest_puts_the_span_context_in_the_request_headers() -> None:
    class Recorder:
        enabled = True

        def __init__(self) -> None:
            self.parents: list[str | None] = []

        def start(self, name, parent, kind, attributes=None, links=()):  # type: ignore[no-untyped-def]
            self.parents.append(parent)
            return tracing.PropagatingSpan(parent)

    recorder = Recorder()
    previous = tracing.install(recorder)
    try:
        span, headers = tracing.start_ingest(
            [(b"host", b"x"), (b"traceparent", PARENT.encode()), (b"tracestate", b"a=1")],
            "/ingest",
        )
    finally:
        tracing.install(previous)
    assert recorder.parents == [PARENT + " a=1"]
    forwarded = tracing.incoming(dict(headers))
    assert forwarded == span.trace
    assert forwarded is not None and tracing.span_id(forwarded) != tracing.span_id(PARENT)
    assert (b"host", b"x") in headers
    assert [name for name, _ in headers].count(b"traceparent") == 1
