"""A retry is a decision written to the store, not a sleep.

`RetryPolicy.decide` turns an attempt's outcome into a Verdict and a next run time: a
schedule of delays (Svix-like by default) with ±jitter, or exponential backoff with full
jitter; a receiver's Retry-After pushes the next attempt later, never earlier.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

import msgspec

from ingestd.destinations.base import Attempt
from ingestd.store.protocol import JobResult, Verdict


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """When to try again after attempt number N failed."""

    schedule: tuple[float, ...] = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
    """Delay before each attempt; its length is the number of attempts."""
    jitter: float = 0.2
    """±fraction applied to scheduled delays (mode 'schedule')."""
    mode: Literal["schedule", "full_jitter"] = "schedule"
    """'full_jitter': delay is uniform(0, schedule[n]) (AWS 'full jitter')."""

    @classmethod
    def exponential(
        cls, *, base: float = 1.0, cap: float = 3600.0, attempts: int = 10
    ) -> RetryPolicy:
        """Exponential backoff with full jitter: uniform(0, min(cap, base·2ⁿ))."""
        delays = tuple(0.0 if n == 0 else min(cap, base * 2 ** (n - 1)) for n in range(attempts))
        return cls(schedule=delays, mode="full_jitter")

    @classmethod
    def from_schedule(cls, schedule: Sequence[float], jitter: float = 0.2) -> RetryPolicy:
        if not schedule:
            raise ValueError("a retry schedule needs at least one attempt")
        return cls(schedule=tuple(float(s) for s in schedule), jitter=jitter)

    @property
    def max_attempts(self) -> int:
        return len(self.schedule)

    def delay_before(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before attempt number `attempt` (2 = the first retry)."""
        nominal = self.schedule[attempt - 1]
        r = rng or random
        if self.mode == "full_jitter":
            return r.uniform(0.0, nominal)
        return max(0.0, nominal * r.uniform(1.0 - self.jitter, 1.0 + self.jitter))

    def decide(
        self,
        job_id: int,
        attempt: int,
        outcome: Attempt,
        now: float,
        rng: random.Random | None = None,
    ) -> JobResult:
        """What to write to the store after attempt number `attempt` reported `outcome`."""
        if outcome.ok:
            return JobResult(
                job_id=job_id, verdict=Verdict.SUCCEEDED, status_code=outcome.status_code
            )
        if outcome.permanent or attempt >= self.max_attempts:
            reason = outcome.error or "failed"
            if not outcome.permanent:
                reason = f"{reason} (attempts exhausted: {attempt})"
            return JobResult(
                job_id=job_id, verdict=Verdict.DEAD, error=reason, status_code=outcome.status_code
            )
        run_at = now + self.delay_before(attempt + 1, rng)
        if outcome.retry_after is not None:
            run_at = max(run_at, now + outcome.retry_after)
        return JobResult(
            job_id=job_id,
            verdict=Verdict.RETRY,
            run_at=run_at,
            error=outcome.error,
            status_code=outcome.status_code,
        )
