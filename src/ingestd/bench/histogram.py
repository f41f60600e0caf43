"""A small log-linear (HDR-style) histogram of non-negative integers, mergeable across processes.

Values below 2·S (S = 2**sub_bits) get a bucket each, so they are exact. Above that every
power-of-two range is split into S equal buckets, so a value is known to within 1/S of itself
(S = 128: under 0.8 %). Counts are kept sparse (a dict), which makes recording one dict update,
merging a dict sum and the serialised form small enough to pass between processes.

Percentiles use the nearest-rank definition (the smallest recorded value with at least p % of
the values at or below it) and answer a bucket's highest equivalent value, clamped to the exact
minimum and maximum, which are tracked apart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

DEFAULT_SUB_BITS = 7


class Histogram:
    """Counts of integer values (the bench records microseconds)."""

    __slots__ = ("_lin", "_shift", "_sub", "count", "counts", "max", "min", "sub_bits", "sum")

    def __init__(self, sub_bits: int = DEFAULT_SUB_BITS) -> None:
        if not 1 <= sub_bits <= 16:
            raise ValueError("sub_bits must be between 1 and 16")
        self.sub_bits = sub_bits
        self._sub = 1 << sub_bits
        self._lin = 2 << sub_bits
        self._shift = sub_bits + 1
        self.counts: dict[int, int] = {}
        self.count = 0
        self.sum = 0
        self.min = 0
        self.max = 0

    # -- recording -----------------------------------------------------------------------

    def index(self, value: int) -> int:
        if value < self._lin:
            return value
        e = value.bit_length() - self._shift
        return e * self._sub + (value >> e)

    def bounds(self, index: int) -> tuple[int, int]:
        """The lowest and highest value that land in bucket `index`."""
        if index < self._lin:
            return index, index
        e = index // self._sub - 1
        mantissa = index - e * self._sub
        return mantissa << e, ((mantissa + 1) << e) - 1

    def record(self, value: int, times: int = 1) -> None:
        if value < 0:
            value = 0
        if value < self._lin:
            idx = value
        else:
            e = value.bit_length() - self._shift
            idx = e * self._sub + (value >> e)
        counts = self.counts
        counts[idx] = counts.get(idx, 0) + times
        if self.count == 0:
            self.min = self.max = value
        elif value < self.min:
            self.min = value
        elif value > self.max:
            self.max = value
        self.count += times
        self.sum += value * times

    def merge(self, other: Histogram) -> Histogram:
        if other.sub_bits != self.sub_bits:
            raise ValueError("cannot merge histograms of different precision")
        if other.count == 0:
            return self
        counts = self.counts
        for idx, n in other.counts.items():
            counts[idx] = counts.get(idx, 0) + n
        if self.count == 0:
            self.min, self.max = other.min, other.max
        else:
            self.min = min(self.min, other.min)
            self.max = max(self.max, other.max)
        self.count += other.count
        self.sum += other.sum
        return self

    @classmethod
    def merged(cls, parts: Iterable[Histogram], sub_bits: int = DEFAULT_SUB_BITS) -> Histogram:
        total = cls(sub_bits)
        for part in parts:
            total.merge(part)
        return total

    # -- reading -------------------------------------------------------------------------

    @property
    def mean(self) -> float:
        return self.sum / self.count if self.count else 0.0

    def percentile(self, p: float) -> int:
        """The value at percentile `p` (0 to 100), nearest rank; 0 when empty."""
        if self.count == 0:
            return 0
        if p <= 0:
            return self.min
        if p >= 100:
            return self.max
        rank = max(1, math.ceil(p / 100.0 * self.count))
        seen = 0
        for idx in sorted(self.counts):
            seen += self.counts[idx]
            if seen >= rank:
                high = self.bounds(idx)[1]
                return max(self.min, min(high, self.max))
        return self.max

    def percentiles(self, ps: Iterable[float]) -> dict[float, int]:
        """Several percentiles in one pass over the buckets."""
        wanted = sorted(set(ps))
        out: dict[float, int] = {}
        if self.count == 0:
            return dict.fromkeys(wanted, 0)
        ranks = [(p, max(1, math.ceil(p / 100.0 * self.count))) for p in wanted]
        seen = 0
        pending = iter(ranks)
        current = next(pending, None)
        for idx in sorted(self.counts):
            seen += self.counts[idx]
            while current is not None and (current[0] <= 0 or seen >= current[1]):
                p = current[0]
                if p <= 0:
                    out[p] = self.min
                elif p >= 100:
                    out[p] = self.max
                else:
                    out[p] = max(self.min, min(self.bounds(idx)[1], self.max))
                current = next(pending, None)
        while current is not None:
            out[current[0]] = self.max
            current = next(pending, None)
        return out

    def distribution(self) -> Iterator[tuple[int, float]]:
        """(highest equivalent value, cumulative fraction) per non-empty bucket, ascending."""
        seen = 0
        for idx in sorted(self.counts):
            seen += self.counts[idx]
            yield min(self.bounds(idx)[1], self.max), seen / self.count

    # -- transport -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "sub_bits": self.sub_bits,
            "count": self.count,
            "sum": self.sum,
            "min": self.min,
            "max": self.max,
            "counts": [[idx, n] for idx, n in sorted(self.counts.items())],
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Histogram:
        h = cls(int(doc["sub_bits"]))
        h.counts = {int(idx): int(n) for idx, n in doc["counts"]}
        h.count = int(doc["count"])
        h.sum = int(doc["sum"])
        h.min = int(doc["min"])
        h.max = int(doc["max"])
        return h
