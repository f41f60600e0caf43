"""Every backend keeps an event's trace context and hands it to the worker with the job."""

from __future__ import annotations

from ingestd.ingest.envelope import parse_event
from ingestd.obs import tracing
from ingestd.routing import delivery_id
from ingestd.store import Store
from ingestd.store.protocol import Routed

T = 1_750_000_000.0
PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def traced(event_id: str, trace: str | None, destinations: tuple[str, ...] = ("hook",)) -> Routed:
    body = {"source": "shop", "type": "order.created", "id": event_id, "data": {"n": 1}}
    sub = parse_event(body, trace=trace)
    return Routed(sub, tuple((d, delivery_id(sub.event, d)) for d in destinations))


async def test_claimed_jobs_carry_the_stored_trace(store: Store) -> None:
    with_state = tracing.parse(PARENT, "vendor=opaque value,other=1")
    assert with_state == PARENT + " vendor=opaque value,other=1"
    items = [
        traced("plain", PARENT),
        traced("stateful", with_state),
        traced("untraced", None),
    ]
    outcomes = await store.accept(items, T)
    assert all(o.kind.value == "accepted" for o in outcomes)
    jobs = await store.claim("w1", 10, 30.0, T + 1)
    by_event = {job.event.id: job.event.trace for job in jobs}
    assert by_event == {"plain": PARENT, "stateful": with_state, "untraced": None}


async def test_jobs_claimed_by_id_carry_the_trace(store: Store) -> None:
    (outcome,) = await store.accept([traced("sync", PARENT, ("a", "b"))], T)
    jobs = await store.claim("w1", 2, 30.0, T + 1, job_ids=outcome.delivery_ids)
    assert sorted(job.destination for job in jobs) == ["a", "b"]
    assert {job.event.trace for job in jobs} == {PARENT}


async def test_trace_is_not_part_of_the_payload_fingerprint(store: Store) -> None:
    # A client retrying with a new traceparent is still sending the same event.
    first = traced("same", PARENT)
    retry = traced("same", "00-11111111111111111111111111111111-2222222222222222-01")
    assert first.submission.fingerprint == retry.submission.fingerprint
    (a,) = await store.accept([first], T)
    (b,) = await store.accept([retry], T + 1)
    assert (a.kind.value, b.kind.value) == ("accepted", "duplicate")
    (job,) = await store.claim("w1", 10, 30.0, T + 2)
    assert job.event.trace == PARENT
