"""destination_backlog's `oldest_created`: the lag the per-destination metrics report."""

from __future__ import annotations

from test_store import T, accept_one, routed

from ingestd.store import Store
from ingestd.store.protocol import DestinationBacklog, JobResult, Verdict


async def test_backlog_counts_each_destination_with_its_oldest_waiting(store: Store) -> None:
    assert await store.destination_backlog(None) == []
    await accept_one(store, routed("e1", destinations=("a", "b")), now=T)
    await accept_one(store, routed("e2", destinations=("a",)), now=T + 10)
    await accept_one(store, routed("e3", destinations=("a", "c")), now=T + 20)
    jobs = await store.claim("w1", 10, 30.0, T + 30)
    by_key = {(j.event.id, j.destination): j for j in jobs}
    assert len(by_key) == 5
    results = [
        JobResult(job_id=by_key["e2", "a"].id, verdict=Verdict.RETRY, run_at=T + 3600),
        JobResult(job_id=by_key["e1", "b"].id, verdict=Verdict.SUCCEEDED),
        JobResult(job_id=by_key["e3", "c"].id, verdict=Verdict.DEAD, error="410"),
        JobResult(job_id=by_key["e3", "a"].id, verdict=Verdict.DEFER, run_at=T + 40),
    ]
    assert await store.finish("w1", results, T + 31) == 4
    a, c = await store.destination_backlog(None)
    # a: e1 running (created T), e2 failed until T+3600 (created T+10), e3 pending again.
    assert (a.destination, a.pending, a.running, a.failed, a.dead) == ("a", 1, 1, 1, 0)
    assert a.oldest_created == T  # the running one counts: it is not delivered yet
    assert a.oldest_due == T + 40  # due times of what waits (running excluded)
    # b delivered: nothing waits and it does not show up; c only has a dead letter.
    assert c == DestinationBacklog(destination="c", dead=1)


async def test_backlog_of_every_tenant_or_one(store: Store) -> None:
    await accept_one(store, routed("x", tenant="t1", destinations=("a",)), now=T + 5)
    await accept_one(store, routed("x", tenant="t2", destinations=("a",)), now=T)
    (both,) = await store.destination_backlog(None)
    assert (both.pending, both.oldest_created) == (2, T)
    (one,) = await store.destination_backlog("t1")
    assert (one.pending, one.oldest_created) == (1, T + 5)
