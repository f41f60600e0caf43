"""The attempt log's rows ↔ values, shared by both SQL backends (same columns)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from ingestd.model import AttemptRecord, DeliveryRecord, StatusReport
from ingestd.store.protocol import JobResult

ATTEMPT_COLUMNS = (
    "delivery",
    "attempt",
    "started_at",
    "duration",
    "verdict",
    "status_code",
    "error_class",
    "error",
    "headers",
    "body",
)
"""insert_attempt's parameters and attempts_of's columns, in this order."""
_decode_headers = msgspec.json.Decoder(dict[str, str]).decode
_encode = msgspec.json.encode


def attempt_row(delivery: int, a: AttemptRecord) -> dict[str, Any]:
    """The named parameters of `insert_attempt` (headers as JSON text)."""
    headers = _encode(a.response_headers).decode() if a.response_headers else None
    return {
        "delivery": delivery,
        "attempt": a.attempt,
        "started_at": a.started_at,
        "duration": a.duration,
        "verdict": a.verdict,
        "status_code": a.status_code,
        "error_class": a.error_class,
        "error": a.error,
        "headers": headers,
        "body": a.response_body,
    }


def logged(results: Iterable[JobResult], done: set[int] | None = None) -> list[dict[str, Any]]:
    """Rows for the results that carry an attempt (of the jobs in `done`, when given)."""
    return [
        attempt_row(r.job_id, r.attempt)
        for r in results
        if r.attempt is not None and (done is None or r.job_id in done)
    ]


def lease_row(delivery: int, attempt: int, now: float, verdict: str) -> dict[str, Any]:
    """An inbox's lease (or acknowledgement) as an attempt-log row."""
    entry = AttemptRecord(attempt=attempt, started_at=now, duration=0.0, verdict=verdict)
    return attempt_row(delivery, entry)


def attempt_from_row(row: Sequence[Any]) -> AttemptRecord:
    headers = row[8]
    if isinstance(headers, str | bytes):
        headers = _decode_headers(headers)
    body = row[9]
    return AttemptRecord(
        attempt=row[1],
        started_at=row[2],
        duration=row[3],
        verdict=row[4],
        status_code=row[5],
        error_class=row[6],
        error=row[7],
        response_headers=headers,
        response_body=bytes(body) if body is not None else None,
    )


def with_log(record: DeliveryRecord, rows: Iterable[Sequence[Any]]) -> DeliveryRecord:
    return msgspec.structs.replace(record, log=tuple(attempt_from_row(r) for r in rows))


def attach(report: StatusReport, rows: Iterable[Sequence[Any]]) -> StatusReport:
    """The report with each delivery's attempts (rows ordered by delivery, then seq)."""
    by_delivery: dict[int, list[Sequence[Any]]] = {}
    for row in rows:
        by_delivery.setdefault(row[0], []).append(row)
    deliveries = tuple(with_log(d, by_delivery.get(d.id, ())) for d in report.deliveries)
    return msgspec.structs.replace(report, deliveries=deliveries)
