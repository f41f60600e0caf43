"""Scrape-time metrics read from the store: backlog, lag, dead letters and health of each
destination. Both the API's GET /metrics and the worker's port serve them.

Every process sharing the store reports the same values (they are the store's, not the
process's): aggregate them with max(), never sum() (docs/operations.md).
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from ingestd.errors import StoreUnavailable
from ingestd.obs import metrics
from ingestd.store.protocol import BreakerState, Store

CONTENT_TYPE = CONTENT_TYPE_LATEST
DEFAULT_TENANT = "default"
"""Destinations are the operator's (default tenant's) and take every tenant's events."""
WAITING = ("pending", "running", "failed")

QUEUED = Gauge(
    "ingestd_destination_deliveries",
    "Deliveries waiting per destination, by state (pending, running, failed = retry due)",
    ["destination", "state"],
    registry=metrics.REGISTRY,
)
OLDEST = Gauge(
    "ingestd_destination_oldest_waiting_seconds",
    "Age of the destination's oldest delivery not yet finished (its lag), 0 when none waits",
    ["destination"],
    registry=metrics.REGISTRY,
)
DEAD = Gauge(
    "ingestd_destination_dead_letters",
    "Dead deliveries of the destination kept in the dead-letter queue",
    ["destination"],
    registry=metrics.REGISTRY,
)
BREAKER = Gauge(
    "ingestd_destination_breaker_state",
    "1 for the destination's current circuit-breaker state, 0 for the others",
    ["destination", "state"],
    registry=metrics.REGISTRY,
)
ENABLED = Gauge(
    "ingestd_destination_enabled",
    "1 while the destination is enabled, 0 once disabled (410, disable_after, operator)",
    ["destination"],
    registry=metrics.REGISTRY,
)
SCRAPE_ERRORS = metrics.STORE_ERRORS.labels("scrape")
PER_DESTINATION = (QUEUED, OLDEST, DEAD, BREAKER, ENABLED)


async def refresh(store: Store) -> None:
    """Read the store, then replace every store-derived series at once (no await between
    clearing and setting: a concurrent scrape never sees them half-written). When the
    store does not answer the previous values stay and ingestd_store_errors_total moves."""
    try:
        depth = await store.depth()
        backlog = await store.destination_backlog(None)  # every tenant's
        destinations = await store.list_destinations(DEFAULT_TENANT)
    except StoreUnavailable:
        SCRAPE_ERRORS.inc()
        return
    now = time.time()
    for gauge in PER_DESTINATION:
        gauge.clear()
    for state in ("pending", "running", "failed", "dead"):
        metrics.BACKLOG.labels(state).set(getattr(depth, state))
    for row in destinations:
        ENABLED.labels(row.name).set(1 if row.enabled else 0)
        for state in BreakerState:
            BREAKER.labels(row.name, state.value).set(1 if row.breaker_state is state else 0)
        # Every configured destination has every series, zeros included, so an alert on
        # `> 0` or a rate() has a series to start from.
        for state in WAITING:
            QUEUED.labels(row.name, state).set(0)
        OLDEST.labels(row.name).set(0)
        DEAD.labels(row.name).set(0)
    for item in backlog:
        for state in WAITING:
            QUEUED.labels(item.destination, state).set(getattr(item, state))
        DEAD.labels(item.destination).set(item.dead)
        oldest = item.oldest_created
        OLDEST.labels(item.destination).set(max(0.0, now - oldest) if oldest else 0.0)


async def exposition(store: Store) -> bytes:
    """The whole registry as Prometheus text, store-derived series fresh."""
    await refresh(store)
    return generate_latest(metrics.REGISTRY)
