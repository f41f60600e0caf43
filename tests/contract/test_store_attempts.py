"""The attempt log on every backend: written with the outcome (same transaction, same lease
check), shown by status() and delivery(), kept per tenant, gone with its delivery."""

from __future__ import annotations

import sqlite3
from typing import Any

import psycopg
from test_store import DAY, TTL, T, accept_one, routed

from ingestd.model import AttemptRecord, DeliveryState
from ingestd.store import Store
from ingestd.store.protocol import DeadLetterQuery, JobResult, Verdict


def attempt(n: int, verdict: str, **fields: Any) -> AttemptRecord:
    return AttemptRecord(attempt=n, started_at=T + n, duration=0.25 * n, verdict=verdict, **fields)


FAILED = attempt(
    1,
    "retry",
    status_code=503,
    error_class="http",
    error="HTTP 503: busy",
    response_headers={"retry-after": "5", "content-type": "text/plain; charset=é"},
    response_body=b"busy \xff\x00 not utf-8",
)
DELIVERED = attempt(2, "succeeded", status_code=200, response_headers={"x": "y"})


def attempts_left(store_url: str) -> int:
    """Rows in the attempt log, read behind the store's back."""
    if store_url.startswith("sqlite"):
        with sqlite3.connect(store_url.removeprefix("sqlite:///")) as conn:
            return int(conn.execute("SELECT count(*) FROM delivery_attempts").fetchone()[0])
    with psycopg.connect(store_url) as conn:
        row = conn.execute("SELECT count(*) FROM delivery_attempts").fetchone()
        assert row is not None
        return int(row[0])


async def run_once(store: Store, now: float, result: Any) -> int:
    (job,) = await store.claim("w1", 10, 30.0, now)
    return await store.finish("w1", [result(job.id)], now)


async def test_each_attempt_is_kept_with_its_outcome(store: Store) -> None:
    await accept_one(store, routed("e1", destinations=("hook", "other")))
    jobs = {j.destination: j for j in await store.claim("w1", 10, 30.0, T)}
    results = [
        JobResult(job_id=jobs["hook"].id, verdict=Verdict.RETRY, run_at=T + 5, attempt=FAILED),
        JobResult(job_id=jobs["other"].id, verdict=Verdict.DEFER, run_at=T + 5),  # not tried
    ]
    assert await store.finish("w1", results, T + 1) == 2
    (job,) = await store.claim("w1", 10, 30.0, T + 10, exclude=["other"])
    done = JobResult(job_id=job.id, verdict=Verdict.SUCCEEDED, status_code=200, attempt=DELIVERED)
    assert await store.finish("w1", [done], T + 11) == 1

    report = await store.status("default", "e1")
    assert report is not None
    hook, other = report.deliveries
    assert hook.log == (FAILED, DELIVERED)  # bytes, headers, None fields round-trip
    assert other.log == ()
    view = await store.delivery("default", hook.delivery_id)
    assert view is not None
    assert view.event.id == "e1" and view.delivery.state is DeliveryState.SUCCEEDED
    assert view.delivery.log == (FAILED, DELIVERED)
    assert await store.delivery("default", "msg_unknown") is None
    assert await store.delivery("acme", hook.delivery_id) is None  # another tenant's


async def test_a_lost_lease_logs_nothing(store: Store) -> None:
    await accept_one(store, routed("e1"))
    (first,) = await store.claim("w1", 1, 1.0, T)
    (again,) = await store.claim("w2", 1, 30.0, T + 2)  # w1's lease ran out
    late = JobResult(job_id=first.id, verdict=Verdict.SUCCEEDED, attempt=DELIVERED)
    assert await store.finish("w1", [late], T + 3) == 0
    mine = JobResult(job_id=again.id, verdict=Verdict.DEAD, error="gone", attempt=FAILED)
    assert await store.finish("w2", [mine], T + 4) == 1
    report = await store.status("default", "e1")
    assert report is not None and report.deliveries[0].log == (FAILED,)


async def test_a_replay_keeps_the_earlier_attempts(store: Store) -> None:
    await accept_one(store, routed("e1"))
    dead = attempt(1, "dead", error_class="timeout", error="timed out after 15s")
    assert (
        await run_once(store, T, lambda i: JobResult(job_id=i, verdict=Verdict.DEAD, attempt=dead))
        == 1
    )
    assert await store.replay_dead(DeadLetterQuery(), T + 10) == 1
    ok = attempt(1, "succeeded", status_code=204)
    assert (
        await run_once(
            store, T + 11, lambda i: JobResult(job_id=i, verdict=Verdict.SUCCEEDED, attempt=ok)
        )
        == 1
    )
    report = await store.status("default", "e1")
    assert report is not None
    assert [(a.attempt, a.verdict) for a in report.deliveries[0].log] == [
        (1, "dead"),
        (1, "succeeded"),
    ]


async def test_inbox_leases_and_acks_are_attempts(store: Store) -> None:
    await accept_one(store, routed("e1", destinations=("pull",)))
    (job,) = await store.lease_inbox("default", "pull", 5, 1.0, T)
    (again,) = await store.lease_inbox("default", "pull", 5, 30.0, T + 2)  # lease ran out
    assert await store.ack_inbox("default", "pull", [again.delivery_id], T + 3) == 1
    view = await store.delivery("default", job.delivery_id)
    assert view is not None
    assert [(a.attempt, a.verdict, a.started_at) for a in view.delivery.log] == [
        (1, "leased", T),
        (2, "leased", T + 2),
        (2, "acked", T + 3),
    ]


async def test_attempts_go_with_their_delivery(store: Store, store_url: str) -> None:
    for name in ("kept", "done", "dead", "purged"):
        await accept_one(store, routed(name), T)
        verdict = Verdict.DEAD if name in ("dead", "purged") else Verdict.SUCCEEDED
        entry = attempt(1, verdict.value)
        assert (
            await run_once(
                store, T, lambda i, v=verdict, a=entry: JobResult(job_id=i, verdict=v, attempt=a)
            )
            == 1
        )
    await accept_one(store, routed("young"), T + 2 * DAY)
    assert attempts_left(store_url) == 4
    purged = await store.status("default", "purged")
    assert purged is not None
    query = DeadLetterQuery(ids=(purged.deliveries[0].delivery_id,))
    assert await store.purge_dead(query) == 1
    assert attempts_left(store_url) == 3
    kept = {"retention": DAY, "dead_retention": DAY, "idempotency_ttl": TTL}
    await store.prune(T + 1.5 * DAY, **kept)
    assert await store.status("default", "done") is None
    assert await store.status("default", "dead") is None
    assert attempts_left(store_url) == 0
