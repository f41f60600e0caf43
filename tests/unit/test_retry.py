"""Retry decisions: what the worker writes to the store after each attempt."""

from __future__ import annotations

import random

import pytest

from ingestd.destinations.base import Attempt
from ingestd.store.protocol import Verdict
from ingestd.worker.retry import RetryPolicy

NOW = 1_000_000.0
FAILED = Attempt(ok=False, error="HTTP 500", status_code=500)


def test_success_is_succeeded_with_its_status() -> None:
    result = RetryPolicy().decide(7, 1, Attempt(ok=True, status_code=204), NOW)
    assert result.verdict is Verdict.SUCCEEDED
    assert result.job_id == 7
    assert result.status_code == 204
    assert result.run_at is None


def test_failure_within_the_schedule_is_retried_at_the_next_delay() -> None:
    policy = RetryPolicy.from_schedule([0, 10, 100], jitter=0.0)
    first = policy.decide(1, 1, FAILED, NOW)
    assert first.verdict is Verdict.RETRY
    assert first.run_at == NOW + 10
    assert first.error == "HTTP 500"
    assert first.status_code == 500
    second = policy.decide(1, 2, FAILED, NOW)
    assert second.verdict is Verdict.RETRY
    assert second.run_at == NOW + 100


def test_exhausted_attempts_are_dead_with_the_reason() -> None:
    policy = RetryPolicy.from_schedule([0, 0.1, 0.1], jitter=0.0)
    result = policy.decide(1, 3, FAILED, NOW)
    assert result.verdict is Verdict.DEAD
    assert result.error is not None
    assert "HTTP 500" in result.error
    assert "exhausted" in result.error
    assert result.run_at is None


def test_attempts_beyond_the_schedule_are_dead_too() -> None:
    # A job replayed or rescued past the end of its schedule must not index out of range.
    assert RetryPolicy.from_schedule([0, 1]).decide(1, 5, FAILED, NOW).verdict is Verdict.DEAD


def test_permanent_failure_is_dead_at_once() -> None:
    policy = RetryPolicy.from_schedule([0, 1, 1, 1])
    outcome = Attempt(ok=False, error="400 bad request", status_code=400, permanent=True)
    result = policy.decide(1, 1, outcome, NOW)
    assert result.verdict is Verdict.DEAD
    assert result.error == "400 bad request"
    assert result.status_code == 400


def test_failure_without_error_text_still_explains_itself() -> None:
    result = RetryPolicy.from_schedule([0]).decide(1, 1, Attempt(ok=False), NOW)
    assert result.verdict is Verdict.DEAD
    assert result.error


def test_single_attempt_schedule_never_retries() -> None:
    policy = RetryPolicy.from_schedule([0])
    assert policy.max_attempts == 1
    assert policy.decide(1, 1, FAILED, NOW).verdict is Verdict.DEAD


def test_empty_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        RetryPolicy.from_schedule([])


def test_max_attempts_is_the_schedule_length() -> None:
    assert RetryPolicy().max_attempts == 8
    assert RetryPolicy.from_schedule([0, 1, 2]).max_attempts == 3


@pytest.mark.parametrize("seed", range(20))
def test_schedule_jitter_stays_within_bounds(seed: int) -> None:
    policy = RetryPolicy.from_schedule([0, 100, 1000], jitter=0.2)
    rng = random.Random(seed)
    for attempt, nominal in ((1, 100), (2, 1000)):
        result = policy.decide(1, attempt, FAILED, NOW, rng)
        assert result.run_at is not None
        assert NOW + nominal * 0.8 <= result.run_at <= NOW + nominal * 1.2


def test_jitter_actually_spreads_retries() -> None:
    policy = RetryPolicy.from_schedule([0, 100], jitter=0.2)
    rng = random.Random(42)
    delays = {policy.delay_before(2, rng) for _ in range(50)}
    assert len(delays) > 40
    assert min(delays) < 95 < 105 < max(delays)


def test_seeded_random_makes_decisions_reproducible() -> None:
    policy = RetryPolicy.from_schedule([0, 60, 600])
    a = [policy.decide(1, 1, FAILED, NOW, random.Random(3)).run_at for _ in range(3)]
    b = [policy.decide(1, 1, FAILED, NOW, random.Random(3)).run_at for _ in range(3)]
    assert a == b


def test_zero_jitter_is_exact() -> None:
    policy = RetryPolicy.from_schedule([0, 5], jitter=0.0)
    assert policy.delay_before(2, random.Random(1)) == 5.0
    assert policy.delay_before(1, random.Random(1)) == 0.0


def test_full_jitter_is_uniform_below_the_exponential_cap() -> None:
    policy = RetryPolicy.exponential(base=1.0, cap=30.0, attempts=8)
    assert policy.mode == "full_jitter"
    assert policy.schedule == (0.0, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0)
    rng = random.Random(7)
    for attempt in range(2, 9):
        cap = policy.schedule[attempt - 1]
        samples = [policy.delay_before(attempt, rng) for _ in range(200)]
        assert all(0.0 <= s <= cap for s in samples)
        # Full jitter spreads over the whole range, not only near the cap.
        assert min(samples) < cap * 0.25
        assert max(samples) > cap * 0.75


def test_retry_after_pushes_the_next_attempt_later() -> None:
    policy = RetryPolicy.from_schedule([0, 5, 5], jitter=0.0)
    outcome = Attempt(ok=False, error="429", status_code=429, retry_after=120.0)
    result = policy.decide(1, 1, outcome, NOW)
    assert result.verdict is Verdict.RETRY
    assert result.run_at == NOW + 120.0


def test_retry_after_never_pulls_the_next_attempt_earlier() -> None:
    policy = RetryPolicy.from_schedule([0, 300], jitter=0.0)
    outcome = Attempt(ok=False, error="503", retry_after=1.0)
    assert policy.decide(1, 1, outcome, NOW).run_at == NOW + 300


def test_retry_after_does_not_extend_an_exhausted_job() -> None:
    policy = RetryPolicy.from_schedule([0, 1], jitter=0.0)
    outcome = Attempt(ok=False, error="503", retry_after=60.0)
    assert policy.decide(1, 2, outcome, NOW).verdict is Verdict.DEAD


def test_default_schedule_is_svix_like() -> None:
    policy = RetryPolicy()
    assert policy.schedule[0] == 0.0
    assert list(policy.schedule) == sorted(policy.schedule)
    assert policy.schedule[-1] >= 3600
