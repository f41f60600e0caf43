"""One behaviour suite for the Store protocol, run against every backend."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
import pytest

from ingestd.errors import InvalidCursor, SchemaTooNew
from ingestd.ingest.envelope import parse_event
from ingestd.model import AcceptOutcome, DeliveryState, EventStatus, OutcomeKind
from ingestd.routing import delivery_id
from ingestd.store import Store, store_from_url
from ingestd.store.protocol import EventQuery, JobResult, Routed, Verdict

T = 1_750_000_000.0
"""A fixed clock (2025-06-15): the protocol takes `now` from its caller."""
DAY = 86400.0
TTL = 3600.0
"""The idempotency window the `store` fixture opens with."""
StoreFactory = Callable[..., Awaitable[Store]]
ACCEPTED, DUPLICATE, MISMATCH, ID_CONFLICT = (
    OutcomeKind.ACCEPTED,
    OutcomeKind.DUPLICATE,
    OutcomeKind.MISMATCH,
    OutcomeKind.ID_CONFLICT,
)


def routed(
    event_id: str | None = None,
    *,
    key: str | None = None,
    source: str = "shop",
    type: str = "order.created",
    data: dict[str, Any] | None = None,
    tenant: str = "default",
    occurred_at: str = "2026-01-01T00:00:00Z",
    destinations: tuple[str, ...] = ("hook",),
) -> Routed:
    body: dict[str, Any] = {"source": source, "type": type, "occurred_at": occurred_at}
    if event_id is not None:
        body["id"] = event_id
    body["data"] = data if data is not None else {"n": 1}
    sub = parse_event(body, idempotency_key=key, tenant_id=tenant)
    return Routed(sub, tuple((d, delivery_id(sub.event, d)) for d in destinations))


def kinds(outcomes: list[AcceptOutcome]) -> list[OutcomeKind]:
    return [o.kind for o in outcomes]


async def accept_one(store: Store, item: Routed, now: float = T) -> AcceptOutcome:
    (outcome,) = await store.accept([item], now)
    return outcome


# -- acceptance ----------------------------------------------------------------------------


async def test_accept_stores_event_and_one_delivery_per_destination(store: Store) -> None:
    data = {"total": 12.5, "items": [1, 2], "note": "nul \x00 and \u00e9 \U0001f600"}
    item = routed("e1", data=data, destinations=("a", "b"))
    outcome = await accept_one(store, item)
    assert outcome.kind is ACCEPTED and outcome.id == "e1"
    assert len(outcome.delivery_ids) == 2 and len(set(outcome.delivery_ids)) == 2
    report = await store.status("default", "e1")
    assert report is not None
    assert report.status is EventStatus.PENDING
    assert report.event.data == data
    assert report.event.received_at == T
    assert [d.destination for d in report.deliveries] == ["a", "b"]
    assert [d.id for d in report.deliveries] == list(outcome.delivery_ids)
    assert report.deliveries[0].delivery_id == delivery_id(item.submission.event, "a")
    assert all(d.state is DeliveryState.PENDING and d.attempts == 0 for d in report.deliveries)


async def test_accept_without_destinations_is_completed(store: Store) -> None:
    outcome = await accept_one(store, routed("lonely", destinations=()))
    assert outcome.kind is ACCEPTED and outcome.delivery_ids == ()
    report = await store.status("default", "lonely")
    assert report is not None and report.status is EventStatus.COMPLETED
    assert report.processed_at == T
    assert await store.accept([], T) == []


async def test_same_key_same_payload_is_duplicate_other_payload_mismatch(store: Store) -> None:
    first = await accept_one(store, routed(key="k1", data={"n": 1}))
    assert first.kind is ACCEPTED
    again = await accept_one(store, routed(key="k1", data={"n": 1}), T + 1)
    assert (again.kind, again.id, again.delivery_ids) == (DUPLICATE, first.id, ())
    other = await accept_one(store, routed(key="k1", data={"n": 2}), T + 2)
    assert (other.kind, other.id) == (MISMATCH, first.id)
    # The key is scoped by tenant and by source.
    assert (await accept_one(store, routed(key="k1", tenant="t2"))).kind is ACCEPTED
    assert (await accept_one(store, routed(key="k1", source="crm"))).kind is ACCEPTED
    assert (await store.depth()).pending == 3


async def test_event_id_taken_by_another_key_is_id_conflict_and_frees_the_key(
    store: Store,
) -> None:
    assert (await accept_one(store, routed("x", key="kx"))).kind is ACCEPTED
    conflict = await accept_one(store, routed("x", key="other"))
    assert (conflict.kind, conflict.id) == (ID_CONFLICT, "x")
    # The conflicting submission left no key behind: the key is free for a new event.
    assert (await accept_one(store, routed("y", key="other"))).kind is ACCEPTED
    # The same id in another tenant is another event.
    assert (await accept_one(store, routed("x", tenant="t2"))).kind is ACCEPTED
    assert (await store.depth()).pending == 3


async def test_duplicates_inside_one_batch_first_one_wins(store: Store) -> None:
    await accept_one(store, routed("taken", key="k-taken"))
    batch = [
        routed(key="k", data={"n": 1}),
        routed(key="k", data={"n": 1}),
        routed(key="k", data={"n": 2}),
        routed(data={"n": 3}),
        routed("e1"),  # key shop:e1
        routed("e1", key="k-e1"),  # same id, other key
        routed("e1"),  # same key as the fifth
        routed("taken", key="kp"),  # conflicts with the stored event
        routed(key="kp"),  # same key: the conflict freed it, so this one is new
        routed("taken", key="k-taken"),  # duplicate of the stored event
    ]
    outcomes = await store.accept(batch, T)
    assert kinds(outcomes) == [
        ACCEPTED,
        DUPLICATE,
        MISMATCH,
        ACCEPTED,
        ACCEPTED,
        ID_CONFLICT,
        DUPLICATE,
        ID_CONFLICT,
        ACCEPTED,
        DUPLICATE,
    ]
    first = outcomes[0].id
    assert outcomes[1].id == first and outcomes[2].id == first
    assert outcomes[6].id == "e1" and outcomes[9].id == "taken"
    assert outcomes[8].id == batch[8].submission.event.id
    assert all(len(o.delivery_ids) == 1 for o in outcomes if o.kind is ACCEPTED)
    assert (await store.depth()).pending == 5


@pytest.mark.parametrize("key", [None, "k-twice"])
async def test_a_group_of_one_event_twice_is_accepted_then_duplicate(
    store: Store, key: str | None
) -> None:
    """Two retries of one event in one group (two requests committed together): the group
    commits, the second is the first's duplicate (PostgreSQL raised StoreUnavailable when
    every submission left after the first round was answered from the group itself)."""
    outcomes = await store.accept([routed("twice", key=key), routed("twice", key=key)], T)
    assert kinds(outcomes) == [ACCEPTED, DUPLICATE]
    assert outcomes[1].id == "twice"


async def test_many_submissions_in_one_batch(store: Store) -> None:
    batch = [routed(f"e{i}", destinations=("a", "b")) for i in range(500)]
    outcomes = await store.accept(batch, T)
    assert kinds(outcomes) == [ACCEPTED] * 500
    assert len({i for o in outcomes for i in o.delivery_ids}) == 1000
    again = await store.accept([*batch[:10], routed("new")], T + 1)
    assert kinds(again) == [DUPLICATE] * 10 + [ACCEPTED]


async def test_expired_key_is_renewed(open_store: StoreFactory) -> None:
    store = await open_store(idempotency_ttl=10.0)
    first = await accept_one(store, routed(key="k", data={"n": 1}))
    assert (await accept_one(store, routed(key="k", data={"n": 2}), T + 5)).kind is MISMATCH
    renewed = await accept_one(store, routed(key="k", data={"n": 2}), T + 20)
    assert renewed.kind is ACCEPTED and renewed.id != first.id
    again = await accept_one(store, routed(key="k", data={"n": 2}), T + 21)
    assert (again.kind, again.id) == (DUPLICATE, renewed.id)


async def test_concurrent_accept_of_one_key_from_several_instances(
    open_store: StoreFactory,
) -> None:
    stores = [await open_store() for _ in range(4)]
    for round_ in range(5):
        items = [routed(f"ev{round_}", data={"n": round_}) for _ in stores]
        outcomes = await asyncio.gather(
            *(accept_one(s, item, T + round_) for s, item in zip(stores, items, strict=True))
        )
        assert sorted(kinds(outcomes)) == sorted([ACCEPTED] + [DUPLICATE] * 3)
        assert {o.id for o in outcomes} == {f"ev{round_}"}
    assert (await stores[0].depth()).pending == 5


async def test_concurrent_batches_with_overlapping_keys(open_store: StoreFactory) -> None:
    stores = [await open_store() for _ in range(3)]
    keys = [f"k{i}" for i in range(40)]
    batches = [
        [routed(key=k, data={"k": k}) for k in (keys if n % 2 else list(reversed(keys)))]
        for n in range(len(stores))
    ]
    results = await asyncio.gather(*(s.accept(b, T) for s, b in zip(stores, batches, strict=True)))
    accepted = [o.id for outcomes in results for o in outcomes if o.kind is ACCEPTED]
    assert len(accepted) == len(keys) == len(set(accepted))
    assert all(o.kind in (ACCEPTED, DUPLICATE) for outcomes in results for o in outcomes)


# -- the job queue ---------------------------------------------------------------------------


async def test_claim_leases_due_jobs_once(store: Store) -> None:
    await store.accept([routed(f"e{i}", data={"i": i}) for i in range(3)], T)
    first = await store.claim("w1", 2, 30.0, T)
    second = await store.claim("w2", 5, 30.0, T)
    assert len(first) == 2 and len(second) == 1
    jobs = first + second
    assert {j.event.id for j in jobs} == {"e0", "e1", "e2"}
    assert all(j.attempt == 1 and j.destination == "hook" for j in jobs)
    assert {j.event.data["i"] for j in jobs} == {0, 1, 2}
    assert jobs[0].delivery_id == delivery_id(jobs[0].event, "hook")
    assert await store.claim("w3", 5, 30.0, T) == []
    depth = await store.depth()
    assert (depth.pending, depth.running, depth.backlog) == (0, 3, 3)


async def test_claim_skips_future_and_excluded_jobs_and_by_id(store: Store) -> None:
    (a,) = (await accept_one(store, routed("a", destinations=("slow",)))).delivery_ids
    await accept_one(store, routed("b", destinations=("fast",)))
    assert await store.claim("w", 5, 30.0, T - 1) == []
    jobs = await store.claim("w", 5, 30.0, T, exclude=["slow"])
    assert [j.destination for j in jobs] == ["fast"]
    (job,) = await store.claim("w", 5, 30.0, T, job_ids=[a])
    assert job.id == a and job.event.id == "a"
    assert await store.claim("w", 5, 30.0, T, job_ids=[a]) == []


async def test_extend_and_finish_are_owner_checked(store: Store) -> None:
    await accept_one(store, routed("e"))
    (job,) = await store.claim("w1", 1, 10.0, T)
    assert await store.extend("w1", [job.id], T + 60) == 1
    assert await store.extend("w2", [job.id], T + 60) == 0
    # The extended lease is not expired at T + 30.
    assert await store.claim("w2", 1, 10.0, T + 30) == []
    ok = JobResult(job_id=job.id, verdict=Verdict.SUCCEEDED, status_code=204)
    assert await store.finish("w2", [ok], T + 31) == 0
    assert await store.finish("w1", [ok], T + 31) == 1
    assert await store.finish("w1", [ok], T + 32) == 0
    report = await store.status("default", "e")
    assert report is not None and report.status is EventStatus.COMPLETED
    (d,) = report.deliveries
    assert (d.state, d.attempts, d.last_status, d.finished_at) == (
        DeliveryState.SUCCEEDED,
        1,
        204,
        T + 31,
    )
    assert report.processed_at == T + 31
    assert await store.extend("w1", [job.id], T + 99) == 0


async def test_expired_lease_is_reclaimed_and_the_lost_lease_cannot_finish(store: Store) -> None:
    await accept_one(store, routed("e"))
    (job,) = await store.claim("w1", 1, 10.0, T)
    assert await store.claim("w2", 1, 10.0, T + 5) == []
    (again,) = await store.claim("w2", 1, 10.0, T + 11)
    assert (again.id, again.attempt) == (job.id, 2)
    late = JobResult(job_id=job.id, verdict=Verdict.SUCCEEDED)
    assert await store.finish("w1", [late], T + 12) == 0
    assert await store.extend("w1", [job.id], T + 60) == 0
    failed = JobResult(job_id=job.id, verdict=Verdict.RETRY, run_at=T + 100, error="boom")
    assert await store.finish("w2", [failed], T + 12) == 1
    report = await store.status("default", "e")
    assert report is not None and report.status is EventStatus.FAILED


async def test_leases_lost_without_an_outcome_are_counted(store: Store) -> None:
    """`interrupted`: how often a lease ran out with no outcome (the worker's process died
    or stalled); a retry or a release is not one. Counted whether the expired job is taken
    over in place or rescued first."""
    await accept_one(store, routed("e"))
    (job,) = await store.claim("w1", 1, 10.0, T)
    assert job.interrupted == 0
    (job,) = await store.claim("w2", 1, 10.0, T + 11)  # taken over
    assert (job.attempt, job.interrupted) == (2, 1)
    retry = JobResult(job_id=job.id, verdict=Verdict.RETRY, run_at=T + 12, error="x")
    assert await store.finish("w2", [retry], T + 12) == 1
    (job,) = await store.claim("w3", 1, 10.0, T + 12)
    assert (job.attempt, job.interrupted) == (3, 1)
    await store.release("w3", [job.id], T + 13)
    (job,) = await store.claim("w3", 1, 10.0, T + 13)
    assert job.interrupted == 1
    # Rescued by another claim that does not take it, then claimed by id.
    assert await store.claim("w4", 1, 10.0, T + 30, exclude=["hook"]) == []
    (job,) = await store.claim("w4", 1, 10.0, T + 31, job_ids=[job.id])
    assert job.interrupted == 2


async def test_expired_leases_are_rescued_even_when_not_claimed(store: Store) -> None:
    await accept_one(store, routed("e", destinations=("a", "b")))
    jobs = await store.claim("w1", 2, 10.0, T)
    assert len(jobs) == 2
    assert await store.claim("w2", 5, 10.0, T + 20, exclude=["a", "b"]) == []
    report = await store.status("default", "e")
    assert report is not None
    assert [d.state for d in report.deliveries] == [DeliveryState.FAILED] * 2
    assert (await store.depth()).running == 0


async def test_expired_leases_are_swept_every_third_of_a_lease_not_on_every_claim(
    store: Store,
) -> None:
    """A claim sweeps expired leases only once lease/3 has passed since this process last
    swept: a dead worker's jobs come back up to lease/3 later, and a busy worker's claims
    skip the sweep."""
    await accept_one(store, routed("a"))
    await accept_one(store, routed("b"))
    (a,) = await store.claim("w1", 1, 1.0, T)  # sweeps; the next sweep is due at T + 1/3
    (b,) = await store.claim("w2", 1, 30.0, T + 0.5)  # sweeps; the next is due at T + 10.5
    assert a.id != b.id
    # a's lease ran out at T + 1, but no sweep is due before T + 10.5: nothing to claim.
    assert await store.claim("w3", 5, 30.0, T + 2) == []
    (again,) = await store.claim("w3", 5, 30.0, T + 11)
    assert (again.id, again.attempt, again.interrupted) == (a.id, 2, 1)


async def test_retry_defer_and_dead(store: Store) -> None:
    await accept_one(store, routed("e"))
    (job,) = await store.claim("w", 1, 30.0, T)
    retry = JobResult(
        job_id=job.id, verdict=Verdict.RETRY, run_at=T + 10, error="503 from hook", status_code=503
    )
    assert await store.finish("w", [retry], T + 1) == 1
    report = await store.status("default", "e")
    assert report is not None
    (d,) = report.deliveries
    assert report.status is EventStatus.FAILED
    assert (d.state, d.attempts, d.last_error, d.last_status, d.next_attempt_at) == (
        DeliveryState.FAILED,
        1,
        "503 from hook",
        503,
        T + 10,
    )
    assert await store.claim("w", 1, 30.0, T + 5) == []
    (job,) = await store.claim("w", 1, 30.0, T + 10)
    assert job.attempt == 2
    # DEFER: not attempted, the attempt is refunded and the last error kept.
    defer = JobResult(job_id=job.id, verdict=Verdict.DEFER, run_at=T + 20)
    assert await store.finish("w", [defer], T + 11) == 1
    report = await store.status("default", "e")
    assert report is not None
    (d,) = report.deliveries
    assert (d.state, d.attempts, d.last_error) == (DeliveryState.FAILED, 1, "503 from hook")
    (job,) = await store.claim("w", 1, 30.0, T + 20)
    assert job.attempt == 2
    dead = JobResult(job_id=job.id, verdict=Verdict.DEAD, error="410 Gone", status_code=410)
    assert await store.finish("w", [dead], T + 21) == 1
    report = await store.status("default", "e")
    assert report is not None and report.status is EventStatus.DEAD
    (d,) = report.deliveries
    assert (d.state, d.attempts, d.finished_at, d.next_attempt_at) == (
        DeliveryState.DEAD,
        2,
        T + 21,
        None,
    )
    depth = await store.depth()
    assert (depth.pending, depth.running, depth.failed, depth.dead) == (0, 0, 0, 1)
    assert await store.claim("w", 1, 30.0, T + 10_000) == []


async def test_release_gives_jobs_back_without_spending_an_attempt(store: Store) -> None:
    await store.accept([routed("a"), routed("b")], T)
    jobs = await store.claim("w1", 2, 30.0, T)
    await store.release("w1", [j.id for j in jobs], T + 1)
    assert (await store.depth()).pending == 2
    again = await store.claim("w2", 2, 30.0, T + 1)
    assert sorted(j.attempt for j in again) == [1, 1]
    await store.release("w1", [j.id for j in again], T + 2)  # not w1's any more
    assert (await store.depth()).running == 2


async def test_finish_many_results_at_once(store: Store) -> None:
    await store.accept([routed(f"e{i}") for i in range(20)], T)
    jobs = await store.claim("w", 20, 30.0, T)
    results = [
        JobResult(job_id=j.id, verdict=Verdict.SUCCEEDED if n % 2 else Verdict.RETRY, run_at=T + 9)
        for n, j in enumerate(jobs)
    ]
    assert await store.finish("w", results, T + 1) == 20
    depth = await store.depth()
    assert (depth.failed, depth.running, depth.pending) == (10, 0, 0)


# -- reading ---------------------------------------------------------------------------------


async def test_status_aggregates_deliveries(store: Store) -> None:
    await accept_one(store, routed("e", destinations=("a", "b")))
    assert await store.status("default", "missing") is None
    assert await store.status("other-tenant", "e") is None
    jobs = {j.destination: j for j in await store.claim("w", 1, 30.0, T, exclude=["b"])}
    report = await store.status("default", "e")
    assert report is not None and report.status is EventStatus.PROCESSING
    ok = JobResult(job_id=jobs["a"].id, verdict=Verdict.SUCCEEDED)
    await store.finish("w", [ok], T + 1)
    report = await store.status("default", "e")
    assert report is not None and report.status is EventStatus.PROCESSING
    assert report.processed_at is None
    (b,) = await store.claim("w", 1, 30.0, T + 2)
    await store.finish("w", [JobResult(job_id=b.id, verdict=Verdict.SUCCEEDED)], T + 3)
    report = await store.status("default", "e")
    assert report is not None and report.status is EventStatus.COMPLETED
    assert report.processed_at == T + 3


async def test_events_are_paginated_and_filtered(store: Store) -> None:
    specs = [
        ("e0", "shop", "order.created", "2026-01-01T00:00:00Z"),
        ("e1", "crm", "contact.added", "2026-01-02T00:00:00Z"),
        ("e2", "shop", "order.paid", "2026-01-03T00:00:00Z"),
        ("e3", "shop", "order.created", "2026-01-04T00:00:00Z"),
        ("e4", "crm", "contact.added", "2026-01-05T00:00:00Z"),
    ]
    for i, (eid, source, type_, at) in enumerate(specs):
        item = routed(eid, source=source, type=type_, occurred_at=at, data={"i": i})
        await accept_one(store, item, T + i)
    await accept_one(store, routed("hidden", tenant="t2"))

    seen: list[str] = []
    cursor = None
    while True:
        page = await store.events(EventQuery(limit=2, cursor=cursor))
        seen += [e.id for e in page.events]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ["e0", "e1", "e2", "e3", "e4"]

    async def ids(**filters: Any) -> list[str]:
        return [e.id for e in (await store.events(EventQuery(**filters))).events]

    assert await ids(source="shop") == ["e0", "e2", "e3"]
    assert await ids(type="contact.added") == ["e1", "e4"]
    assert await ids(since="2026-01-02T00:00:00.000000Z", until="2026-01-04T00:00:00.000000Z") == [
        "e1",
        "e2",
    ]
    assert await ids(source="shop", type="order.created", limit=1) == ["e0"]
    assert await ids(tenant_id="t2") == ["hidden"]
    page = await store.events(EventQuery(limit=5))
    assert page.next_cursor is None
    event = page.events[3]
    assert (event.source, event.type, event.data, event.received_at) == (
        "shop",
        "order.created",
        {"i": 3},
        T + 3,
    )


# -- retention -------------------------------------------------------------------------------


async def test_a_cursor_the_store_did_not_make_is_refused(store: Store) -> None:
    await accept_one(store, routed("e0"))
    crafted = (
        "abc",
        "-1",
        "1.2.3",
        "1;DROP TABLE events",
        "\u00b2",  # a Unicode digit: str.isdigit() accepts it, int() does not
        "\u0661",  # ARABIC-INDIC DIGIT ONE: int() would accept it
        "99999999999999999999999",  # beyond any 64-bit integer
        "9223372036854775808",  # 2**63: one past a SQLite/bigint seq
        "1.9223372036854775808",
        "18446744073709551616.1",  # 2**64: one past a PostgreSQL xid8
        "\u00b2.1",
        "1.\u00b2",
    )
    for cursor in crafted:
        with pytest.raises(InvalidCursor):
            await store.events(EventQuery(cursor=cursor))


async def finish_all(store: Store, now: float, verdict: Verdict = Verdict.SUCCEEDED) -> None:
    jobs = await store.claim("pruner-test", 1000, 30.0, now)
    await store.finish("pruner-test", [JobResult(job_id=j.id, verdict=verdict) for j in jobs], now)


async def test_prune_keys_dead_letters_and_finished_events(store: Store) -> None:
    await store.accept([routed(f"done{i}", key=f"k{i}") for i in range(3)], T)
    await finish_all(store, T + 1)
    await accept_one(store, routed("dead"), T)
    await finish_all(store, T + 2, Verdict.DEAD)
    await accept_one(store, routed("young"), T + 7200)
    await finish_all(store, T + 7201)
    await accept_one(store, routed("waiting"), T)

    kept = {"retention": 3600.0, "dead_retention": 4 * 3600.0, "idempotency_ttl": TTL}
    pruned = await store.prune(T + 7300, **kept)
    assert (pruned.events, pruned.dead, pruned.keys) == (3, 0, 5)
    assert await store.status("default", "done0") is None
    for eid in ("dead", "waiting", "young"):
        assert await store.status("default", eid) is not None
    # The key is gone with its event: the same submission is accepted anew.
    assert (await accept_one(store, routed("done0", key="k0"), T + 7300)).kind is ACCEPTED

    pruned = await store.prune(T + 5 * 3600, **kept)
    assert (pruned.events, pruned.dead, pruned.keys) == (2, 1, 2)
    assert await store.status("default", "dead") is None
    assert (await store.depth()).dead == 0
    assert await store.status("default", "waiting") is not None


async def test_prune_whole_old_days(store: Store) -> None:
    await store.accept([routed(f"old{i}", destinations=("a", "b")) for i in range(50)], T)
    await finish_all(store, T + 60)
    await store.accept([routed(f"new{i}") for i in range(5)], T + 2 * DAY)
    await finish_all(store, T + 2 * DAY)
    await accept_one(store, routed("stuck"), T + DAY)
    kept = {"retention": DAY / 2, "dead_retention": DAY, "idempotency_ttl": TTL}
    pruned = await store.prune(T + 3 * DAY, **kept)
    assert (pruned.events, pruned.dead) == (55, 0)
    assert [e.id for e in (await store.events(EventQuery())).events] == ["stuck"]
    assert await store.status("default", "old0") is None
    # Ids of pruned events are free again.
    assert (await accept_one(store, routed("old0", key="fresh"), T + 3 * DAY)).kind is ACCEPTED


# -- lifecycle -------------------------------------------------------------------------------


async def test_schema_newer_than_the_code_is_refused(
    store_url: str, open_store: StoreFactory
) -> None:
    store = store_from_url(store_url)
    await store.open()
    await store.close()
    if store_url.startswith("sqlite"):
        conn = sqlite3.connect(store_url.split(":///", 1)[1])
        with conn:
            conn.execute("INSERT INTO ingestd_schema (version) VALUES (9999)")
        conn.close()
    else:
        with psycopg.connect(store_url, autocommit=True) as pg:
            pg.execute("INSERT INTO ingestd_schema (version) VALUES (9999)")
    with pytest.raises(SchemaTooNew, match="9999"):
        await open_store()


async def test_a_missing_lower_migration_is_applied(
    store_url: str, open_store: StoreFactory
) -> None:
    """A database whose record lacks a version below its highest (a migration numbered
    lower that landed later) gets that migration on the next open."""
    store = store_from_url(store_url)
    await store.open()
    await store.close()
    undo = "ALTER TABLE events DROP COLUMN trace"
    forget = "DELETE FROM ingestd_schema WHERE version = 3"
    if store_url.startswith("sqlite"):
        conn = sqlite3.connect(store_url.split(":///", 1)[1])
        with conn:
            conn.execute(undo)
            conn.execute(forget)
        conn.close()
    else:
        with psycopg.connect(store_url, autocommit=True) as pg:
            pg.execute(undo)
            pg.execute(forget)
    reopened = await open_store()
    routed_event = routed("traced")
    await accept_one(reopened, routed_event)
    assert (await reopened.events(EventQuery())).events[0].id == "traced"


async def test_open_twice_is_idempotent_and_ping_answers(open_store: StoreFactory) -> None:
    first, second = await asyncio.gather(open_store(), open_store())
    await first.ping()
    await second.ping()
    assert (await first.depth()).backlog == 0


async def test_wait_for_work_wakes_on_accept(store: Store) -> None:
    await store.wait_for_work(0.5)  # the first wait may return at once (listener started)
    started = time.monotonic()
    await store.wait_for_work(0.3)
    assert time.monotonic() - started >= 0.25, "woke with nothing to do"
    waiter = asyncio.create_task(store.wait_for_work(10.0))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await accept_one(store, routed("wake"), time.time())
    await asyncio.wait_for(waiter, 2.0)
    assert time.monotonic() - started < 1.0


async def test_wait_for_work_wakes_at_a_scheduled_retry(store: Store) -> None:
    now = time.time()
    await accept_one(store, routed("r"), now)
    (job,) = await store.claim("w", 1, 30.0, now)
    retry = JobResult(job_id=job.id, verdict=Verdict.RETRY, run_at=time.time() + 0.3)
    await store.finish("w", [retry], time.time())
    started = time.monotonic()
    await store.wait_for_work(10.0)
    while time.monotonic() - started < 0.2:  # an early wake-up (listener started) is allowed
        await store.wait_for_work(10.0)
    assert time.monotonic() - started < 2.0


async def test_probe_commit_writes_and_commits(store: Store) -> None:
    """Readiness (issue 14 item 14) commits for real; a full disk makes it raise (the
    disk-full scenario of tests/faults shows that end to end)."""
    await store.probe_commit()
    await store.probe_commit()
    await accept_one(store, routed("after-probe"))
    assert (await store.status("default", "after-probe")) is not None
