"""Trace context end to end through real ingestd processes and a real webhook receiver.

Without OpenTelemetry: the caller's traceparent is stored with the event and each webhook
continues it (same trace id, a fresh span id). With INGESTD_OTEL=true: the OTLP/HTTP
exporter posts spans to a small loopback collector, and the ingest → commit → delivery
spans and the webhook's traceparent form one tree. With INGESTD_LOG_FORMAT=json every
log line is JSON and the delivery lines name the event, delivery and trace.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from receivers import Receiver, start_ingestd
from support import wait_for

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"


def webhook_toml(url: str, retry: str = "[0, 0.2, 0.2]") -> str:
    return f"""
[[destinations]]
name = "hook"
kind = "webhook"
url = "{url}"
retry_schedule = {retry}
"""


def parts(traceparent: str) -> tuple[str, str, str, str]:
    version, trace_id, span_id, flags = traceparent.split("-")
    return version, trace_id, span_id, flags


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


async def test_webhook_continues_the_callers_trace(tmp_path: Path, receiver: Receiver) -> None:
    server = await start_ingestd(tmp_path, webhook_toml(receiver.url()))
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            headers = {"traceparent": TRACEPARENT, "tracestate": "congo=t61rcWkgMzE"}
            r = await client.post(
                "/ingest", json={"source": "shop", "type": "a", "id": "t1"}, headers=headers
            )
            assert r.status_code == 202
            r = await client.post("/ingest", json={"source": "shop", "type": "a", "id": "t2"})
            assert r.status_code == 202
            await wait_for(lambda: _count(receiver, 2))
        by_id = {json.loads(got.body)["id"]: got.headers for got in receiver.received()}
        version, trace_id, span_id, flags = parts(by_id["t1"]["traceparent"])
        assert (version, trace_id, flags) == ("00", TRACE_ID, "01")
        assert span_id != CALLER_SPAN and span_id != "0" * 16
        assert by_id["t1"]["tracestate"] == "congo=t61rcWkgMzE"
        assert "traceparent" not in by_id["t2"]  # nothing to continue, tracing off
    finally:
        await server.stop()


async def test_each_batch_event_and_each_retry_carry_the_request_trace(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.behave("/flaky", status=500)
    # Two events, two attempts each: four failures stay under the breaker's five.
    server = await start_ingestd(tmp_path, webhook_toml(receiver.url("/flaky"), retry="[0, 0.2]"))
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            events = [{"source": "shop", "type": "a", "id": f"b{i}"} for i in range(2)]
            r = await client.post(
                "/ingest/batch", json={"events": events}, headers={"traceparent": TRACEPARENT}
            )
            assert r.status_code == 207 and r.json()["accepted"] == 2
            await wait_for(lambda: _count(receiver, 4))
        sent = [got.headers["traceparent"] for got in receiver.received()]
        assert len(sent) == 4 and {parts(tp)[1] for tp in sent} == {TRACE_ID}
        assert len({parts(tp)[2] for tp in sent}) == len(sent)  # one span per attempt
    finally:
        await server.stop()


async def test_an_invalid_traceparent_is_ignored(tmp_path: Path, receiver: Receiver) -> None:
    server = await start_ingestd(tmp_path, webhook_toml(receiver.url()))
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            r = await client.post(
                "/ingest",
                json={"source": "shop", "type": "a"},
                headers={"traceparent": f"00-{'0' * 32}-{CALLER_SPAN}-01"},
            )
            assert r.status_code == 202
            await wait_for(lambda: _count(receiver, 1))
        assert "traceparent" not in receiver.received()[0].headers
    finally:
        await server.stop()


async def test_json_logs_name_event_delivery_and_trace(tmp_path: Path, receiver: Receiver) -> None:
    receiver.behave("/down", status=503)
    server = await start_ingestd(
        tmp_path,
        webhook_toml(receiver.url("/down"), retry="[0, 0.1]"),
        INGESTD_LOG_FORMAT="json",
        INGESTD_LOG_LEVEL="info",
    )
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            r = await client.post(
                "/ingest",
                json={"source": "shop", "type": "a", "id": "logged"},
                headers={"traceparent": TRACEPARENT},
            )
            assert r.status_code == 202

            async def dead() -> bool:
                status = (await client.get("/ingest/logged/status")).json()
                return bool(status["status"] == "dead")

            await wait_for(dead)
    finally:
        await server.stop()
    lines = [json.loads(line) for line in server.logs().splitlines() if line.strip()]
    assert lines, "the server logged nothing"
    assert all({"ts", "level", "logger", "message"} <= line.keys() for line in lines)
    deliveries = [line for line in lines if line.get("delivery_id")]
    assert [line["level"] for line in deliveries] == ["info", "warning"]  # retry, then dead
    for line in deliveries:
        assert line["event_id"] == "logged"
        assert line["destination"] == "hook"
        assert line["trace_id"] == TRACE_ID
        assert line["delivery_id"].startswith("msg_")
    assert [line["attempt"] for line in deliveries] == [1, 2]


# -- OpenTelemetry over OTLP/HTTP to a loopback collector -----------------------------------


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent: str
    kind: int
    attributes: dict[str, Any]
    links: list[tuple[str, str]]
    status_code: int


class Collector:
    """Accepts OTLP/HTTP protobuf posts on /v1/traces and keeps the spans."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.posts = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> Collector:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _traces(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/x-protobuf"
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.read())
        self.posts += 1
        for resource_spans in export.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}.get(
                "service.name"
            )
            assert service == "ingestd"
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    self.spans.append(
                        Span(
                            name=s.name,
                            trace_id=s.trace_id.hex(),
                            span_id=s.span_id.hex(),
                            parent=s.parent_span_id.hex(),
                            kind=s.kind,
                            attributes={a.key: _value(a.value) for a in s.attributes},
                            links=[(link.trace_id.hex(), link.span_id.hex()) for link in s.links],
                            status_code=s.status.code,
                        )
                    )
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    def named(self, name: str) -> list[Span]:
        return [s for s in self.spans if s.name == name]


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value"))


@pytest.fixture
async def collector() -> AsyncIterator[Collector]:
    c = await Collector().start()
    yield c
    await c.stop()


SERVER_KIND, CLIENT_KIND = 2, 3
"""OTLP Span.SpanKind values."""


async def test_otel_spans_link_ingest_commit_and_delivery(
    tmp_path: Path, receiver: Receiver, collector: Collector
) -> None:
    receiver.behave("/once", status=500)
    server = await start_ingestd(
        tmp_path,
        webhook_toml(receiver.url("/once"), retry="[0, 0.2]"),
        INGESTD_OTEL="true",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.port}",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            r = await client.post(
                "/ingest",
                json={"source": "shop", "type": "a", "id": "otel-1"},
                headers={"traceparent": TRACEPARENT},
            )
            assert r.status_code == 202
            await wait_for(lambda: _count(receiver, 2))  # first attempt fails, then dead
            r = await client.post("/ingest/batch", json={"events": [{"source": "s"}] * 2})
            assert r.status_code == 207

            async def spans_in() -> bool:
                return len(collector.named("ingestd.deliver")) >= 4

            await wait_for(spans_in)
    finally:
        await server.stop()

    (ingest,) = [s for s in collector.named("ingestd.ingest") if s.trace_id == TRACE_ID]
    # A request without a traceparent starts its own trace; its batch is one ingest span.
    (batch,) = [s for s in collector.named("ingestd.ingest") if s.trace_id != TRACE_ID]
    assert ingest.parent == CALLER_SPAN and ingest.kind == SERVER_KIND
    assert ingest.attributes["ingestd.events"] == 1
    assert ingest.attributes["ingestd.outcome"] == "accepted"
    assert ingest.attributes["http.response.status_code"] == 202

    commits = [s for s in collector.named("ingestd.commit") if s.trace_id == TRACE_ID]
    assert [c.parent for c in commits] == [ingest.span_id]
    assert commits[0].attributes["ingestd.group_size"] >= 1

    attempts = sorted(
        (s for s in collector.named("ingestd.deliver") if s.trace_id == TRACE_ID),
        key=lambda s: s.attributes["ingestd.attempt"],
    )
    assert [a.parent for a in attempts] == [ingest.span_id, ingest.span_id]
    assert [a.kind for a in attempts] == [CLIENT_KIND, CLIENT_KIND]
    assert [a.attributes["ingestd.attempt"] for a in attempts] == [1, 2]
    assert [a.attributes["http.response.status_code"] for a in attempts] == [500, 500]
    assert [a.attributes["ingestd.outcome"] for a in attempts] == ["retry", "dead"]
    assert all(a.attributes["ingestd.destination"] == "hook" for a in attempts)
    assert all(a.attributes["ingestd.destination.kind"] == "webhook" for a in attempts)
    assert all(a.status_code == 2 for a in attempts)  # STATUS_CODE_ERROR

    # The receiver's trace joins: each webhook's parent is its delivery attempt's span.
    sent = [parts(got.headers["traceparent"]) for got in receiver.received("/once")]
    ours = sorted(span for _, trace, span, _ in sent if trace == TRACE_ID)
    assert ours == sorted(a.span_id for a in attempts)
    # The batch's events were delivered in the batch request's own trace.
    assert {trace for _, trace, _, _ in sent} - {TRACE_ID} == {batch.trace_id}

    assert batch.parent == "" and batch.attributes["ingestd.events"] == 2
    assert batch.attributes["ingestd.events.accepted"] == 2
    assert batch.attributes["ingestd.outcome"] == "batch"


async def _count(receiver: Receiver, n: int) -> bool:
    return len(receiver.received()) >= n
