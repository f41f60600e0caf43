"""destination_backlog: what the per-destination metrics read, on every backend."""

from __future__ import annotations

from test_store import T, accept_one, routed

from ingestd.store import Store
from ingestd.store.protocol import DestinationBacklog, JobResult, Verdict


async def test_backlog_counts_each_destination_by_state_with_its_oldest_waiting(
    store: Store,
) -> None:
    assert await store.destination_backlog() == []
    await accept_one(store, routed("e1", destinations=("a", "b")), now=T)
    await accept_one(store, routed("e2", destinations=("a",)), now=T + 10)
    await accept_one(store, routed("e3", destinations=("a", "c")), now=T + 20)
    # a: three jobs; run e1 (running), fail e2 for a retry, leave e3 pending.
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
    backlog = await store.destination_backlog()
    assert backlog == [
        # e1 running since T, e2 failed (created T+10), e3 pending again (created T+20).
        DestinationBacklog(destination="a", pending=1, running=1, failed=1, oldest_waiting_at=T),
        # b delivered: nothing waits and it does not show up.
        DestinationBacklog(destination="c", dead=1),
    ]


async def test_backlog_takes_every_tenants_deliveries(store: Store) -> None:
    await accept_one(store, routed("x", tenant="t1", destinations=("a",)), now=T + 5)
    await accept_one(store, routed("x", tenant="t2", destinations=("a",)), now=T)
    (only,) = await store.destination_backlog()
    assert only == DestinationBacklog(destination="a", pending=2, oldest_waiting_at=T)
