"""Log output: plain text by default, one JSON object per line with INGESTD_LOG_FORMAT=json.

Delivery log lines carry `event_id`, `delivery_id`, `destination`, `attempt` and
`trace_id` (pass `extra=delivery_fields(job)`); any line logged while a traced span is
current in its task gets that span's `trace_id` and `span_id`.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from ingestd.model import Job
from ingestd.obs import tracing

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
FIELDS = ("event_id", "delivery_id", "destination", "attempt", "trace_id", "span_id")
"""Context fields copied from a record's `extra` into the JSON line, in this order."""


def delivery_fields(job: Job) -> dict[str, Any]:
    """The `extra` of a log line about one delivery."""
    fields: dict[str, Any] = {
        "event_id": job.event.id,
        "delivery_id": job.delivery_id,
        "destination": job.destination,
        "attempt": job.attempt,
    }
    if job.event.trace is not None:
        fields["trace_id"] = tracing.trace_id(job.event.trace)
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, context fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": _rfc3339(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        for name in FIELDS:
            value = fields.get(name)
            if value is not None:
                doc[name] = value
        current = tracing.current_trace.get()
        if current is not None:
            # The running span is the more precise context (a delivery attempt).
            doc["trace_id"] = tracing.trace_id(current)
            doc["span_id"] = tracing.span_id(current)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exception"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def _rfc3339(created: float) -> str:
    whole = int(created)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{stamp}.{int((created - whole) * 1000):03d}Z"


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for INGESTD_LOG_FORMAT (`text` or `json`)."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def configure(level: str = "info", log_format: str = "text") -> None:
    """Send every log record (ingestd's, uvicorn's, libraries') to stderr in one format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
