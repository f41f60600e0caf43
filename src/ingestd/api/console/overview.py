"""The overview: ingest rate and latency, outcomes, backlog and lag per destination, dead
letters, breakers and disabled destinations; its live part is re-fetched every second."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ingestd.api.console.session import Session
from ingestd.api.console.web import COUNT_CAP, Web
from ingestd.obs import metrics
from ingestd.store.protocol import EventQuery

WINDOW = 60.0
"""Rates and latency over about the last minute."""
RECENT = 10
OUTCOMES = ("accepted", "duplicate", "rejected")
LATENCY_METRIC = "ingestd_http_request_duration_seconds"
INGEST_ROUTES = frozenset({"/ingest", "/ingest/batch", "/api/events"})
"""The ingest requests' duration, arrival to answer, summed over routes and statuses."""


@dataclass(frozen=True)
class Sample:
    at: float
    outcomes: dict[str, float]
    buckets: tuple[tuple[float, float], ...]
    """(upper bound, cumulative count) of the latency histogram."""


def read_sample(now: float) -> Sample:
    """This process's counters, read through the registry's public collect()."""
    outcomes = dict.fromkeys(OUTCOMES, 0.0)
    summed: dict[float, float] = {}
    for family in metrics.REGISTRY.collect():
        if family.name == "ingestd_ingest_events":
            for s in family.samples:
                if s.name.endswith("_total") and s.labels.get("outcome") in outcomes:
                    outcomes[s.labels["outcome"]] = s.value
        elif family.name == LATENCY_METRIC:
            for s in family.samples:
                if s.name.endswith("_bucket") and s.labels.get("route") in INGEST_ROUTES:
                    bound = float(s.labels["le"])
                    summed[bound] = summed.get(bound, 0.0) + s.value
    return Sample(now, outcomes, tuple(sorted(summed.items())))


def quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over cumulative (bound, count) pairs."""
    pairs = list(buckets)
    if not pairs or pairs[-1][1] <= 0:
        return None
    rank = q * pairs[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in pairs:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            span = count - lower_count
            return lower_bound + (bound - lower_bound) * (
                (rank - lower_count) / span if span else 1
            )
        lower_bound, lower_count = bound, count
    return None


@dataclass
class Sampler:
    """Keeps a minute of samples so the overview can show rates (per process)."""

    samples: deque[Sample] = field(default_factory=lambda: deque(maxlen=256))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def rates(self, now: float) -> dict[str, object]:
        with self.lock:
            if not self.samples or now - self.samples[-1].at >= 1.0:
                self.samples.append(read_sample(now))
            while len(self.samples) > 2 and now - self.samples[1].at > WINDOW:
                self.samples.popleft()
            first, last = self.samples[0], self.samples[-1]
        elapsed = last.at - first.at
        rates: dict[str, float | None] = {
            o: (last.outcomes[o] - first.outcomes[o]) / elapsed if elapsed > 0 else None
            for o in OUTCOMES
        }
        before = dict(first.buckets)
        delta = [(bound, count - before.get(bound, 0.0)) for bound, count in last.buckets]
        return {
            "rates": rates,
            "totals": last.outcomes,
            "window": elapsed,
            "p50": quantile(0.5, delta),
            "p95": quantile(0.95, delta),
        }


SAMPLER = Sampler()


async def context(web: Web, session: Session) -> dict[str, Any]:
    now = time.time()
    store = web.store
    tenant = None if session.is_operator else session.principal.tenant
    backlog = await store.destination_backlog(tenant, dead_cap=COUNT_CAP + 1)
    destinations = await store.list_destinations() if session.is_operator else []
    recent = await store.events(
        EventQuery(tenant_id=session.principal.tenant, limit=RECENT, newest_first=True)
    )
    return {
        "now": now,
        "ingest": SAMPLER.rates(now) if session.is_operator else None,
        "backlog": backlog,
        "waiting": sum(b.waiting for b in backlog),
        "dead": sum(min(b.dead, COUNT_CAP) for b in backlog),
        "dead_more": any(b.dead > COUNT_CAP for b in backlog),
        "lag": {
            b.destination: max(0.0, now - b.oldest_due) for b in backlog if b.oldest_due is not None
        },
        "open_breakers": [d for d in destinations if d.breaker_state.value != "closed"],
        "disabled": [d for d in destinations if not d.enabled],
        "destinations": destinations,
        "recent": recent.events,
    }


async def page(web: Web, request: Request, session: Session) -> Response:
    return web.render(request, session, "overview.html", **await context(web, session))


async def live(web: Web, request: Request, session: Session) -> Response:
    """The overview's live part alone, for the script that swaps it in."""
    return web.render(request, session, "overview_live.html", **await context(web, session))
