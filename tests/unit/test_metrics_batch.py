"""metrics.observe_all: a group of observations counts exactly as one observe() each."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram

from ingestd.obs import metrics


def samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    return {
        (s.name, s.labels.get("le", "")): s.value
        for metric in histogram.collect()
        for s in metric.samples
        if not s.name.endswith("_created")
    }


def test_observe_all_counts_like_observe_each() -> None:
    values = [0.0, 0.001, 0.0010001, 0.004, 0.005, 0.3, 14.9, 15.0, 16.0, 1e9, 0.02, 0.001]
    buckets = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15)
    one = Histogram("one", "each", buckets=buckets, registry=CollectorRegistry())
    grouped = Histogram("one", "each", buckets=buckets, registry=CollectorRegistry())
    for value in values:
        one.observe(value)
    metrics.observe_all(grouped, values)
    assert samples(grouped) == samples(one)
    assert samples(one)[("one_count", "")] == len(values)
