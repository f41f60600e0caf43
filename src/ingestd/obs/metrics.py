"""Prometheus metrics, one registry per process, exposed at GET /metrics."""

from __future__ import annotations

import functools

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

INGESTED = Counter(
    "ingestd_ingest_events",
    "Events answered by the ingest endpoints, by outcome",
    ["outcome"],
    registry=REGISTRY,
)
REQUESTS = Counter(
    "ingestd_ingest_requests",
    "Ingest requests by HTTP status",
    ["status"],
    registry=REGISTRY,
)
GROUP_SIZE = Histogram(
    "ingestd_commit_group_events",
    "Events per group-commit transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
    registry=REGISTRY,
)
COMMIT_SECONDS = Histogram(
    "ingestd_commit_seconds",
    "Time of one group-commit transaction",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0),
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "ingestd_deliveries",
    "Delivery attempts by destination and verdict",
    ["destination", "verdict"],
    registry=REGISTRY,
)
DELIVERY_SECONDS = Histogram(
    "ingestd_delivery_seconds",
    "Duration of one delivery attempt",
    ["destination"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15),
    registry=REGISTRY,
)
BACKLOG = Gauge(
    "ingestd_deliveries_waiting",
    "Deliveries by state (read from the store at scrape time)",
    ["state"],
    registry=REGISTRY,
)
IN_FLIGHT = Gauge(
    "ingestd_worker_in_flight", "Deliveries running in this process", registry=REGISTRY
)


@functools.cache
def requests_with_status(status: int) -> Counter:
    """The child counter for one HTTP status (labels() takes a lock and builds a key)."""
    return REQUESTS.labels(str(status))


@functools.cache
def events_with_outcome(outcome: str) -> Counter:
    """The child counter for one acceptance outcome."""
    return INGESTED.labels(outcome)
