"""The OpenTelemetry adapter with the SDK's in-memory exporter: parents, links, context."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ingestd.obs import tracing
from ingestd.obs.otel import OtelTracer, span_context, stored

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    previous = tracing.install(OtelTracer(provider))
    yield spans
    tracing.install(previous)
    provider.shutdown()


def test_stored_form_round_trips_through_a_span_context() -> None:
    text = PARENT + " congo=t61rcWkgMzE"
    ctx = span_context(text)
    assert ctx.is_remote and ctx.trace_flags.sampled
    assert stored(ctx) == text


def test_ingest_then_delivery_are_parent_and_child(exporter: InMemorySpanExporter) -> None:
    ingest, headers = tracing.start_ingest([(b"traceparent", PARENT.encode())], "/ingest")
    stored_trace = tracing.incoming(dict(headers))
    tracing.end_ingest(ingest, 202)
    assert stored_trace is not None
    delivery = tracing.start_delivery(stored_trace, "hook", "webhook", 1, "msg_1")
    # While the attempt runs, OpenTelemetry's current span is the attempt (user handlers nest).
    current = otel_trace.get_current_span().get_span_context()
    assert f"{current.span_id:016x}" == tracing.span_id(delivery.trace or "")
    assert tracing.outgoing_headers(stored_trace)["traceparent"] == delivery.trace
    tracing.end_delivery(delivery, 200, "succeeded", None)
    assert not otel_trace.get_current_span().get_span_context().is_valid
    assert tracing.current_trace.get() is None

    done = {span.name: span for span in exporter.get_finished_spans()}
    ingest_span, deliver_span = done["ingestd.ingest"], done["ingestd.deliver"]
    assert ingest_span.parent is not None and ingest_span.parent.span_id == 0x00F067AA0BA902B7
    assert deliver_span.parent is not None
    assert deliver_span.parent.span_id == ingest_span.context.span_id
    assert deliver_span.context.trace_id == int(TRACE_ID, 16)
    assert deliver_span.attributes is not None
    assert deliver_span.attributes["ingestd.outcome"] == "succeeded"
    assert deliver_span.status.is_ok


def test_a_commit_is_the_child_of_its_first_request_linked_to_the_others(
    exporter: InMemorySpanExporter,
) -> None:
    other = "00-11111111111111111111111111111111-2222222222222222-01"
    span = tracing.commit_span([PARENT, other, None, other, PARENT], 5)
    span.end()
    (commit,) = exporter.get_finished_spans()
    assert commit.attributes is not None and commit.attributes["ingestd.group_size"] == 5
    assert commit.parent is not None and commit.parent.trace_id == int(TRACE_ID, 16)
    assert [(link.context.trace_id, link.context.span_id) for link in commit.links] == [
        (0x11111111111111111111111111111111, 0x2222222222222222)
    ]


def test_a_request_without_a_trace_starts_one(exporter: InMemorySpanExporter) -> None:
    ingest, headers = tracing.start_ingest([(b"host", b"x")], "/ingest/batch")
    tracing.end_ingest(ingest, 207, {"accepted": 2, "duplicate": 1, "rejected": 0})
    (span,) = exporter.get_finished_spans()
    assert span.parent is None
    assert tracing.incoming(dict(headers)) == ingest.trace
    assert span.attributes is not None
    assert span.attributes["ingestd.events"] == 3
    assert span.attributes["ingestd.events.duplicate"] == 1


def test_setup_installs_opentelemetry_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    from ingestd.config import Settings
    from ingestd.obs.setup import configure_tracing, tracing_wanted

    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    assert not tracing_wanted(Settings())
    assert tracing_wanted(Settings(otel=True))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    assert tracing_wanted(Settings())
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert not tracing_wanted(Settings(otel=True))
    monkeypatch.delenv("OTEL_SDK_DISABLED")

    previous = tracing.tracer()
    try:
        configure_tracing(Settings(otel=True))
        installed = tracing.tracer()
        assert isinstance(installed, OtelTracer)
        configure_tracing(Settings(otel=True))  # a second Runtime in the process keeps it
        assert tracing.tracer() is installed
    finally:
        current = tracing.install(previous)
        if isinstance(current, OtelTracer):
            current.provider.shutdown()  # type: ignore[attr-defined]
