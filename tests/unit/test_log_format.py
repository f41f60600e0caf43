"""JSON log lines: parseable, with the delivery's ids; plain text stays the default."""

from __future__ import annotations

import io
import json
import logging

from ingestd.ingest.envelope import parse_event
from ingestd.model import Job
from ingestd.obs import logs, tracing

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def job(trace: str | None = PARENT) -> Job:
    sub = parse_event({"source": "shop", "type": "t", "id": "e-1"}, trace=trace)
    return Job(id=7, delivery_id="msg_abc", destination="hook", attempt=2, event=sub.event)


def capture(log_format: str) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter(log_format))
    logger = logging.getLogger(f"test.logs.{log_format}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_json_lines_carry_the_delivery_ids() -> None:
    logger, stream = capture("json")
    logger.warning("delivery %s is dead", "msg_abc", extra=logs.delivery_fields(job()))
    line = json.loads(stream.getvalue())
    assert line["message"] == "delivery msg_abc is dead"
    assert line["level"] == "warning"
    assert line["logger"] == "test.logs.json"
    assert line["ts"].endswith("Z")
    assert line["event_id"] == "e-1"
    assert line["delivery_id"] == "msg_abc"
    assert line["destination"] == "hook"
    assert line["attempt"] == 2
    assert line["trace_id"] == "0af7651916cd43dd8448eb211c80319c"


def test_json_lines_without_a_trace_have_no_trace_id() -> None:
    logger, stream = capture("json")
    logger.info("x", extra=logs.delivery_fields(job(trace=None)))
    line = json.loads(stream.getvalue())
    assert "trace_id" not in line and line["delivery_id"] == "msg_abc"


def test_the_running_span_names_trace_and_span() -> None:
    logger, stream = capture("json")
    span = tracing.PropagatingSpan(PARENT)
    span.activate()
    try:
        logger.info("inside")
    finally:
        span.end()
    logger.info("outside")
    inside, outside = (json.loads(text) for text in stream.getvalue().splitlines())
    assert span.trace is not None
    assert inside["trace_id"] == tracing.trace_id(PARENT)
    assert inside["span_id"] == tracing.span_id(span.trace)
    assert "trace_id" not in outside


def test_exceptions_stay_inside_one_json_line() -> None:
    logger, stream = capture("json")
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        logger.exception("failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert "ValueError: boom" in doc["exception"]


def test_text_is_the_default_format() -> None:
    logger, stream = capture("text")
    logger.info("hello %s", "world", extra=logs.delivery_fields(job()))
    text = stream.getvalue()
    assert "INFO test.logs.text hello world" in text
    assert not text.lstrip().startswith("{")
