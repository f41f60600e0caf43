"""The circuit breaker on a real SQLite store: open, defer, probe, close, share, disable.

Times are passed explicitly; nothing here sleeps or measures time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ingestd.config import DestinationConfig
from ingestd.destinations.base import Attempt
from ingestd.destinations.inbox import InboxDestination
from ingestd.model import Job
from ingestd.routing import Directory
from ingestd.store.protocol import BreakerState
from ingestd.store.sqlite import SQLiteStore
from ingestd.worker.breaker import Breaker, BreakerPolicy

OK = Attempt(ok=True, status_code=200)
FAIL = Attempt(ok=False, status_code=500, error="HTTP 500")
T0 = 1_000_000.0


class Nothing:
    async def deliver(self, job: Job) -> Attempt:
        return OK

    async def close(self) -> None:
        return None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "b.db")
    await s.open()
    for name, kind in (("hook", "webhook"), ("box", "inbox")):
        await s.create_destination("default", name, {"name": name, "kind": kind}, T0)
    yield s
    await s.close()


def directory() -> Directory:
    d = Directory(lambda c: InboxDestination(c) if c.kind == "inbox" else Nothing())
    d.load(
        [
            DestinationConfig(name="hook", kind="webhook"),
            DestinationConfig(name="box", kind="inbox"),
        ]
    )
    return d


POLICY = BreakerPolicy(consecutive_failures=3, cooldown=10.0, min_calls=10, window=60.0)


async def settle(breaker: Breaker) -> None:
    await breaker.stop()  # waits for the store writes it started


async def row_state(store: SQLiteStore) -> BreakerState:
    row = await store.get_destination("default", "hook")
    assert row is not None
    return row.breaker_state


async def test_consecutive_failures_open_it_and_jobs_are_deferred(store: SQLiteStore) -> None:
    breaker = Breaker(store, directory(), POLICY)
    for i in range(2):
        breaker.record("hook", FAIL, T0 + i)
    assert breaker.admit("hook", T0 + 2) is None
    breaker.record("hook", FAIL, T0 + 2)
    assert "hook" in breaker.blocked()
    assert breaker.admit("hook", T0 + 3) == T0 + 2 + POLICY.cooldown
    await settle(breaker)
    assert await row_state(store) is BreakerState.OPEN


async def test_a_success_resets_the_consecutive_count(store: SQLiteStore) -> None:
    breaker = Breaker(store, directory(), POLICY)
    for i, outcome in enumerate([FAIL, FAIL, OK, FAIL, FAIL]):
        breaker.record("hook", outcome, T0 + i)
    assert "hook" not in breaker.blocked()
    await settle(breaker)


async def test_failure_rate_over_the_window_opens_it(store: SQLiteStore) -> None:
    breaker = Breaker(store, directory(), POLICY)
    for i in range(10):
        breaker.record("hook", FAIL if i % 2 else OK, T0 + i)
    assert "hook" in breaker.blocked()
    await settle(breaker)


async def test_after_the_cooldown_one_worker_probes_and_a_success_closes(
    store: SQLiteStore,
) -> None:
    first = Breaker(store, directory(), POLICY)
    other = Breaker(store, directory(), POLICY)
    for i in range(3):
        first.record("hook", FAIL, T0 + i)
    await settle(first)
    await other.sync(T0 + 5)  # another worker adopts the open breaker
    assert "hook" in other.blocked()
    after = T0 + 2 + POLICY.cooldown + 1
    await first.sync(after)
    await other.sync(after)
    holders = [b for b in (first, other) if "hook" not in b.blocked()]
    assert len(holders) == 1  # exactly one probe
    probe = holders[0]
    assert probe.admit("hook", after) is None  # the probe goes
    assert probe.admit("hook", after) is not None  # the next one waits
    probe.record("hook", OK, after + 0.1)
    await settle(probe)
    assert await row_state(store) is BreakerState.CLOSED
    for b in (first, other):
        await b.sync(after + 1)
        assert "hook" not in b.blocked()
        assert b.admit("hook", after + 1) is None


async def test_a_failed_probe_opens_it_again(store: SQLiteStore) -> None:
    breaker = Breaker(store, directory(), POLICY)
    for i in range(3):
        breaker.record("hook", FAIL, T0 + i)
    await settle(breaker)
    after = T0 + 20
    await breaker.sync(after)
    assert breaker.admit("hook", after) is None
    breaker.record("hook", FAIL, after + 1)
    assert "hook" in breaker.blocked()
    assert breaker.admit("hook", after + 2) == after + 1 + POLICY.cooldown
    await settle(breaker)
    assert await row_state(store) is BreakerState.OPEN


async def test_permanent_failures_do_not_count(store: SQLiteStore) -> None:
    breaker = Breaker(store, directory(), POLICY)
    for i in range(5):
        breaker.record("hook", Attempt(ok=False, permanent=True, error="400"), T0 + i)
    assert "hook" not in breaker.blocked()
    await settle(breaker)


async def test_inbox_destinations_are_never_pushed(store: SQLiteStore) -> None:
    breaker = Breaker(store, directory(), POLICY)
    assert "box" in breaker.blocked()
    assert breaker.admit("box", T0) == T0  # handed back at once, attempt refunded
    await settle(breaker)


async def test_failing_longer_than_disable_after_disables(store: SQLiteStore) -> None:
    disabled: list[tuple[str, str]] = []
    policy = BreakerPolicy(consecutive_failures=1000, disable_after=100.0)
    breaker = Breaker(store, directory(), policy, on_disable=lambda n, r: disabled.append((n, r)))
    breaker.record("hook", FAIL, T0)
    await settle(breaker)  # failing_since = T0 is now stored
    row = await store.get_destination("default", "hook")
    assert row is not None and row.failing_since == T0
    breaker.record("hook", FAIL, T0 + 50)
    assert disabled == []
    breaker.record("hook", FAIL, T0 + 101)
    assert disabled and disabled[0][0] == "hook"
    breaker.record("hook", OK, T0 + 102)
    await settle(breaker)
    row = await store.get_destination("default", "hook")
    assert row is not None and row.failing_since is None


async def test_per_destination_overrides() -> None:
    policy = BreakerPolicy().with_overrides({"breaker_cooldown": 2, "disable_after": 60})
    assert policy.cooldown == 2.0
    assert policy.disable_after == 60.0
    assert policy.consecutive_failures == BreakerPolicy().consecutive_failures
