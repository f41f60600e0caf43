"""Prometheus metrics, one registry per process, exposed at GET /metrics.

Names follow Prometheus conventions (`promtool check metrics`): the unit in the name,
counters exposed with `_total`. Labels stay bounded: route templates (never raw paths),
status classes, destination names and fixed enums; nothing per event, key or tenant.
"""

from __future__ import annotations

import bisect
import collections
import functools
import math
import platform
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ingestd.version import __version__

REGISTRY = CollectorRegistry(auto_describe=True)

REQUEST_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
"""1 ms to 1 s, with 0.15 s so the ingest-latency alert (P95 over 150 ms) reads a bound."""
LATENCY_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0, 4 * 3600.0, 12 * 3600.0, 24 * 3600.0,
)  # fmt: skip
"""202 → delivered: milliseconds when all is well, hours when retries ran (schedule)."""

BUILD_INFO = Gauge(
    "ingestd_build_info",
    "Always 1; the labels say which ingestd runs",
    ["version", "python"],
    registry=REGISTRY,
)
BUILD_INFO.labels(__version__, platform.python_version()).set(1)

HTTP_SECONDS = Histogram(
    "ingestd_http_request_duration_seconds",
    "Time from a request's arrival to its answer, by route template and status class",
    ["route", "status"],
    buckets=REQUEST_BUCKETS,
    registry=REGISTRY,
)
OVERLOAD = Counter(
    "ingestd_http_overload_responses",
    "429 and 503 answers (rate limit, acceptor queue full, store unavailable)",
    ["route", "status"],
    registry=REGISTRY,
)
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
STORE_ERRORS = Counter(
    "ingestd_store_errors",
    "Store calls that failed because the store did not answer, by operation",
    ["operation"],
    registry=REGISTRY,
)
for _operation in ("accept", "claim", "extend", "finish", "scrape"):
    STORE_ERRORS.labels(_operation)  # every series from the start, at 0: rate() has a base
DELIVERIES_ENQUEUED = Counter(
    "ingestd_deliveries_enqueued",
    "Delivery jobs committed with accepted events (one per subscribed destination)",
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
DELIVERED_LATENCY = Histogram(
    "ingestd_delivery_latency_seconds",
    "From the event's acceptance (its 202) to its successful delivery, per destination",
    ["destination"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
BACKLOG = Gauge(
    "ingestd_deliveries_waiting",
    "Deliveries by state, every destination together (read from the store at scrape time)",
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


def status_class(status: int) -> str:
    return f"{status // 100}xx"


@functools.cache
def request_timer(route: str, status: int) -> Histogram:
    """The histogram child for one route template and status class (cached: the ingest
    fast path observes it on every request)."""
    return HTTP_SECONDS.labels(route, status_class(status))


def observe_request(route: str, status: int, seconds: float) -> None:
    request_timer(route, status).observe(seconds)
    if status in (429, 503):
        OVERLOAD.labels(route, str(status)).inc()


def observe_all(histogram: Histogram, values: Sequence[float]) -> None:
    """`histogram.observe(v)` for each value, with one locked update per bucket touched
    instead of two per value (the worker counts a group of attempts at once). Falls back
    to observe() if prometheus_client's Histogram no longer has the fields read here."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            histogram.observe(value)
        return
    # observe() counts a value in the first bucket whose bound is >= it (the last is +Inf)
    counts = collections.Counter(bisect.bisect_left(bounds, value) for value in values)
    for index, count in counts.items():
        buckets[min(index, len(buckets) - 1)].inc(count)
    total.inc(math.fsum(values))


def store_error(operation: str) -> None:
    STORE_ERRORS.labels(operation).inc()
