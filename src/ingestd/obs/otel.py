"""The OpenTelemetry adapter of the tracing port (`pip install 'ingestd[otel]'`).

Spans go to an OpenTelemetry SDK tracer provider; `from_environment()` builds one that
exports over OTLP/HTTP as the standard `OTEL_*` variables say (endpoint, headers,
service name, sampler), through the outbound proxy (otlp_session.py). Stored trace
contexts become remote parents and links.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Mapping, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace as otel_trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from ingestd.config import Settings
from ingestd.obs import tracing
from ingestd.obs.otlp_session import otlp_session, traces_endpoint
from ingestd.obs.tracing import Attribute, Kind

_KINDS = {
    Kind.SERVER: otel_trace.SpanKind.SERVER,
    Kind.CLIENT: otel_trace.SpanKind.CLIENT,
    Kind.INTERNAL: otel_trace.SpanKind.INTERNAL,
}
_ROOT = otel_context.Context()
"""An empty context: a span without a stored parent starts a trace, whatever is current."""


def span_context(trace: str) -> otel_trace.SpanContext:
    """A stored-form trace context as a remote OpenTelemetry SpanContext."""
    state = tracing.tracestate(trace)
    return otel_trace.SpanContext(
        trace_id=int(tracing.trace_id(trace), 16),
        span_id=int(tracing.span_id(trace), 16),
        is_remote=True,
        trace_flags=otel_trace.TraceFlags(int(trace[53:55], 16)),
        trace_state=otel_trace.TraceState.from_header([state]) if state else None,
    )


def stored(ctx: otel_trace.SpanContext) -> str:
    """An OpenTelemetry SpanContext in stored form."""
    text = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
    state = ctx.trace_state.to_header() if ctx.trace_state else ""
    return f"{text} {state}" if state else text


class OtelSpan:
    """One OpenTelemetry span behind the port's Span."""

    __slots__ = ("_context_token", "_span", "_token", "_trace")

    def __init__(self, span: otel_trace.Span) -> None:
        self._span = span
        self._trace = stored(span.get_span_context())
        self._token: contextvars.Token[str | None] | None = None
        self._context_token: contextvars.Token[otel_context.Context] | None = None

    @property
    def trace(self) -> str | None:
        return self._trace

    def set(self, key: str, value: Attribute) -> None:
        self._span.set_attribute(key, value)

    def fail(self, description: str) -> None:
        self._span.set_status(otel_trace.Status(otel_trace.StatusCode.ERROR, description))

    def activate(self) -> None:
        # Both contexts: ours for webhooks and logs, OpenTelemetry's for user handlers'
        # own spans (and any instrumented client) to nest under the delivery.
        self._token = tracing.current_trace.set(self._trace)
        self._context_token = otel_context.attach(otel_trace.set_span_in_context(self._span))

    def end(self) -> None:
        self._span.end()
        if self._context_token is not None:
            otel_context.detach(self._context_token)
            self._context_token = None
        if self._token is not None:
            tracing.current_trace.reset(self._token)
            self._token = None


class OtelTracer:
    """The port's Tracer on an OpenTelemetry tracer provider."""

    enabled = True

    def __init__(self, provider: otel_trace.TracerProvider) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer("ingestd")

    def start(
        self,
        name: str,
        parent: str | None,
        kind: Kind,
        attributes: Mapping[str, Attribute] | None = None,
        links: Sequence[str] = (),
    ) -> OtelSpan:
        if parent is None:
            context = _ROOT
        else:
            remote = otel_trace.NonRecordingSpan(span_context(parent))
            context = otel_trace.set_span_in_context(remote, _ROOT)
        span = self._tracer.start_span(
            name,
            context=context,
            kind=_KINDS[kind],
            attributes=attributes,
            links=[otel_trace.Link(span_context(link)) for link in links],
        )
        return OtelSpan(span)


def provider_with(
    exporter: SpanExporter | None = None, settings: Settings | None = None
) -> TracerProvider:
    """An SDK provider named `ingestd` (unless OTEL_SERVICE_NAME says otherwise) that
    exports in batches to `exporter`, by default OTLP/HTTP configured by OTEL_* variables,
    through the outbound proxy and with the CA bundle of `settings`."""
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = traces_endpoint()
        session = otlp_session(settings or Settings(), endpoint)
        exporter = OTLPSpanExporter(endpoint=endpoint, session=session)
    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": "ingestd"}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def from_environment(settings: Settings | None = None) -> OtelTracer:
    """The adapter `ingestd` installs when INGESTD_OTEL or OTEL_EXPORTER_OTLP_ENDPOINT is set."""
    return OtelTracer(provider_with(settings=settings))
