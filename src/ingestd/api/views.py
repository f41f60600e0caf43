"""JSON shapes of stored things, shared by the routes, the synchronous mode and the CLI."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from ingestd.model import AttemptRecord, DeliveryRecord, Event, StatusReport
from ingestd.runtime import Processed


def rfc3339(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_body(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "occurred_at": event.occurred_at,
        "received_at": rfc3339(event.received_at),
        "actor_id": event.actor_id,
        "subject": event.subject,
        "data": event.data,
    }


def attempt_body(a: AttemptRecord) -> dict[str, Any]:
    """One attempt-log entry. The response body is text when it is UTF-8, else base64."""
    body: dict[str, Any] = {"headers": a.response_headers or {}, "body": None}
    if a.response_body is not None:
        try:
            body["body"] = a.response_body.decode("utf-8")
        except UnicodeDecodeError:
            body["body_base64"] = base64.b64encode(a.response_body).decode()
    return {
        "attempt": a.attempt,
        "started_at": rfc3339(a.started_at),
        "duration_ms": round(a.duration * 1000, 3),
        "verdict": a.verdict,
        "status_code": a.status_code,
        "error_class": a.error_class,
        "error": a.error,
        "response": body,
    }


def delivery_body(d: DeliveryRecord) -> dict[str, Any]:
    return {
        "destination": d.destination,
        "delivery_id": d.delivery_id,
        "state": d.state.value,
        "attempts": d.attempts,
        "last_status_code": d.last_status,
        "last_error": d.last_error,
        "next_attempt_at": rfc3339(d.next_attempt_at),
        "created_at": rfc3339(d.created_at),
        "updated_at": rfc3339(d.updated_at),
        "finished_at": rfc3339(d.finished_at),
        "attempt_log": [attempt_body(a) for a in d.log],
    }


def status_body(report: StatusReport) -> dict[str, Any]:
    errors = [d for d in report.deliveries if d.last_error]
    latest_error = max(errors, key=lambda d: d.updated_at).last_error if errors else None
    return {
        "id": report.event.id,
        "event_id": report.event.id,
        "status": report.status.value,
        "attempts": sum(d.attempts for d in report.deliveries),
        "last_error": latest_error,
        "received_at": rfc3339(report.event.received_at),
        "processed_at": rfc3339(report.processed_at),
        "source": report.event.source,
        "type": report.event.type,
        "destinations": [delivery_body(d) for d in report.deliveries],
    }


def processed_body(done: Processed) -> dict[str, Any]:
    """The 200 of synchronous mode: the event's status once its deliveries ran."""
    body: dict[str, Any] = status_body(done.report) if done.report else {"id": done.id}
    for d in body.get("destinations", ()):
        if d["destination"] in done.pull and d["state"] == "pending":
            d["queued"] = f"waiting in the inbox: GET /inbox/{d['destination']}"
    body["status_url"] = f"/ingest/{done.id}/status"
    body["idempotency_key"] = done.idempotency_key
    return body
