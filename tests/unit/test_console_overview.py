"""The overview's figures: quantiles from cumulative histogram buckets, rates from samples."""

from __future__ import annotations

import math

from ingestd.api.console.overview import Sample, Sampler, quantile


def test_quantile_interpolates_like_prometheus() -> None:
    # 10 observations: 5 at or under 1 ms, 9 under 5 ms, one beyond 10 ms.
    buckets = [(0.001, 5.0), (0.005, 9.0), (0.01, 9.0), (math.inf, 10.0)]
    assert quantile(0.5, buckets) == 0.001
    p80 = quantile(0.8, buckets)
    assert p80 is not None and abs(p80 - 0.004) < 1e-9  # 3 of 4 through the 1-5 ms bucket
    assert quantile(0.99, buckets) == 0.01  # the open top bucket reports its lower bound
    assert quantile(0.5, []) is None
    assert quantile(0.5, [(0.001, 0.0), (math.inf, 0.0)]) is None


def test_rates_come_from_the_samples_a_window_apart() -> None:
    sampler = Sampler()
    counts = {"accepted": 100.0, "duplicate": 0.0, "rejected": 2.0}
    sampler.samples.append(Sample(1000.0, counts, ((0.01, 10.0), (math.inf, 10.0))))
    later = {"accepted": 400.0, "duplicate": 30.0, "rejected": 2.0}
    sampler.samples.append(Sample(1010.0, later, ((0.01, 20.0), (math.inf, 30.0))))
    figures = sampler.rates(1010.5)  # under a second after the last: no new sample
    assert figures["rates"] == {"accepted": 30.0, "duplicate": 3.0, "rejected": 0.0}
    assert figures["window"] == 10.0
    assert figures["p50"] is not None and figures["p50"] <= 0.01  # 10 of the 20 new ones
    assert figures["p95"] == 0.01  # beyond the last finite bound
