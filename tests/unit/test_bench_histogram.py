"""The bench's log-linear histogram: exact small values, bounded relative error, merging."""

from __future__ import annotations

import math
import random

import pytest

from ingestd.bench.histogram import Histogram


def nearest_rank(values: list[int], p: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


def test_small_values_are_exact() -> None:
    h = Histogram()
    for v in range(1, 101):  # 1..100 µs
        h.record(v)
    assert h.count == 100
    assert (h.min, h.max) == (1, 100)
    assert h.mean == pytest.approx(50.5)
    assert h.percentile(50) == 50
    assert h.percentile(95) == 95
    assert h.percentile(99) == 99
    assert h.percentile(99.9) == 100
    assert h.percentile(100) == 100
    assert h.percentile(0) == 1


def test_large_values_within_relative_error() -> None:
    rng = random.Random(7)
    values = [int(rng.lognormvariate(8, 1.5)) for _ in range(20_000)]
    h = Histogram()
    for v in values:
        h.record(v)
    for p in (50, 90, 95, 99, 99.9):
        exact = nearest_rank(values, p)
        got = h.percentile(p)
        assert got >= exact  # highest equivalent value of the bucket
        assert got <= exact * (1 + 1 / 128) + 1, (p, exact, got)
    assert h.min == min(values)
    assert h.max == max(values)
    assert h.percentile(100) == max(values)


def test_bucket_bounds_cover_every_value_once() -> None:
    h = Histogram(sub_bits=3)
    last_high = -1
    for idx in range(0, 200):
        low, high = h.bounds(idx)
        assert low == last_high + 1
        assert h.index(low) == idx
        assert h.index(high) == idx
        last_high = high


def test_percentiles_in_one_pass_match_single_queries() -> None:
    h = Histogram()
    for v in [5, 1_000, 1_001, 250_000, 3, 9_999_999, 42]:
        h.record(v)
    ps = h.percentiles([0, 50, 95, 99, 99.9, 100])
    for p, value in ps.items():
        assert value == h.percentile(p)


def test_merge_equals_recording_everything_in_one() -> None:
    a, b, both = Histogram(), Histogram(), Histogram()
    for v in range(0, 50_000, 7):
        a.record(v)
        both.record(v)
    for v in range(3, 90_000, 13):
        b.record(v)
        both.record(v)
    merged = Histogram.merged([a, b])
    assert merged.counts == both.counts
    assert (merged.count, merged.sum, merged.min, merged.max) == (
        both.count,
        both.sum,
        both.min,
        both.max,
    )
    restored = Histogram.from_dict(merged.to_dict())
    assert restored.percentiles([50, 99]) == both.percentiles([50, 99])


def test_empty_histogram_answers_zero() -> None:
    h = Histogram()
    assert h.percentile(99) == 0
    assert h.percentiles([50, 99]) == {50: 0, 99: 0}
    assert h.mean == 0.0
    assert Histogram().merge(h).count == 0


def test_record_with_times_and_negative_clamp() -> None:
    h = Histogram()
    h.record(-5)
    h.record(10, times=9)
    assert h.count == 10
    assert h.min == 0
    assert h.percentile(10) == 0
    assert h.percentile(11) == 10
