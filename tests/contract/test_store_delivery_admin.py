"""Store additions for delivery (docs/store-roles.md), on every backend."""

from __future__ import annotations

import asyncio
from typing import Any

from ingestd.ingest.envelope import parse_event
from ingestd.model import DeliveryState
from ingestd.routing import delivery_id
from ingestd.store import Store
from ingestd.store.protocol import BreakerState, DeadLetterQuery, JobResult, Routed, Verdict

T = 1_750_000_000.0


def routed(event_id: str, destinations: tuple[str, ...], type: str = "t") -> Routed:
    sub = parse_event({"source": "shop", "type": type, "id": event_id, "data": {"id": event_id}})
    return Routed(sub, tuple((d, delivery_id(sub.event, d)) for d in destinations))


def hook(name: str, url: str = "https://example.com/hook") -> dict[str, Any]:
    return {"name": name, "kind": "webhook", "url": url}


async def test_destinations_are_seeded_created_updated_and_deleted(store: Store) -> None:
    v0 = await store.catalog_version()
    await store.sync_destinations("default", [hook("a"), hook("b")], T)
    v1 = await store.catalog_version()
    assert v1 > v0
    await store.sync_destinations("default", [hook("a"), hook("b")], T + 1)
    assert await store.catalog_version() == v1  # nothing changed
    assert await store.create_destination("default", "api-made", hook("api-made"), T)
    assert not await store.create_destination("default", "api-made", hook("api-made"), T)
    await store.accept([routed("e", ("b",))], T)
    # b left the file: deleted, its open deliveries dead-lettered; a's text changed.
    await store.sync_destinations("default", [hook("a", "https://example.com/new")], T + 2)
    names = [d.name for d in await store.list_destinations()]
    assert names == ["a", "api-made"]
    a = await store.get_destination("default", "a")
    assert a is not None and a.config["url"] == "https://example.com/new"
    assert await store.get_destination("other", "a") is None
    report = await store.status("default", "e")
    assert report is not None
    assert report.deliveries[0].state is DeliveryState.DEAD
    assert report.deliveries[0].last_error == "destination deleted"

    assert await store.disable_destination("default", "a", "410 Gone", T + 3)
    assert not await store.disable_destination("default", "a", "410 Gone", T + 3)
    a = await store.get_destination("default", "a")
    assert a is not None and (a.enabled, a.disabled_reason) == (False, "410 Gone")
    assert await store.update_destination("default", "a", hook("a"), T + 4, enabled=True)
    a = await store.get_destination("default", "a")
    assert a is not None and (a.enabled, a.disabled_reason) == (True, None)
    assert not await store.update_destination("default", "nope", hook("nope"), T + 4)
    assert await store.delete_destination("default", "api-made", T + 5)
    assert not await store.delete_destination("default", "api-made", T + 5)


async def test_breaker_has_one_probe_winner(open_store: Any) -> None:
    stores: list[Store] = [await open_store() for _ in range(3)]
    store = stores[0]
    await store.sync_destinations("default", [hook("a")], T)
    assert await store.mark_failing("default", "a", T) == T
    assert await store.mark_failing("default", "a", T + 1) == T
    assert await store.mark_failing("default", "nope", T) is None
    await store.trip_breaker("default", "a", T + 30, T + 1)
    row = await store.get_destination("default", "a")
    assert row is not None
    assert (row.breaker_state, row.breaker_until, row.failing_since) == (
        BreakerState.OPEN,
        T + 30,
        T,
    )
    assert not await store.take_probe("default", "a", 10, T + 29)
    wins = await asyncio.gather(*(s.take_probe("default", "a", 10, T + 30) for s in stores))
    assert sorted(wins) == [False, False, True]
    assert not await store.take_probe("default", "a", 10, T + 35)
    assert await store.take_probe("default", "a", 10, T + 41)  # the probe's lease expired
    await store.close_breaker("default", "a", T + 42)
    row = await store.get_destination("default", "a")
    assert row is not None
    assert (row.breaker_state, row.breaker_until, row.failing_since) == (
        BreakerState.CLOSED,
        None,
        None,
    )


async def test_dead_letters_are_listed_replayed_and_purged(store: Store) -> None:
    await store.accept([routed(f"e{i}", ("a", "b"), type=f"t{i % 2}") for i in range(4)], T)
    jobs = await store.claim("w", 100, 30.0, T)
    await store.finish(
        "w",
        [JobResult(job_id=j.id, verdict=Verdict.DEAD, error="gone") for j in jobs],
        T + 1,
    )
    page = await store.dead_letters(DeadLetterQuery(limit=5))
    assert len(page.items) == 5 and page.next_after == page.items[-1].delivery.id
    rest = await store.dead_letters(DeadLetterQuery(after=page.next_after or 0))
    assert len(rest.items) == 3 and rest.next_after is None
    only_a = await store.dead_letters(DeadLetterQuery(destination="a", event_type="t1"))
    assert {(i.delivery.destination, i.event.type) for i in only_a.items} == {("a", "t1")}
    assert len(only_a.items) == 2
    assert not (await store.dead_letters(DeadLetterQuery(since=T + 2))).items
    assert not (await store.dead_letters(DeadLetterQuery(tenant_id="other"))).items
    chosen = only_a.items[0]
    by_id = await store.dead_letters(DeadLetterQuery(ids=(chosen.delivery.delivery_id,)))
    assert [i.delivery.id for i in by_id.items] == [chosen.delivery.id]
    assert by_id.items[0].event.data == {"id": chosen.event.id}

    assert await store.replay_dead(DeadLetterQuery(ids=(chosen.delivery.delivery_id,)), T + 5) == 1
    (job,) = await store.claim("w", 10, 30.0, T + 5)
    assert (job.id, job.delivery_id, job.attempt) == (
        chosen.delivery.id,
        chosen.delivery.delivery_id,
        1,
    )
    assert await store.purge_dead(DeadLetterQuery(destination="b")) == 4
    assert (await store.depth()).dead == 3


async def test_inbox_leases_and_acknowledges(store: Store) -> None:
    await store.accept([routed(f"e{i}", ("pull",)) for i in range(3)], T)
    first = await store.lease_inbox("default", "pull", 2, 30.0, T)
    assert [j.event.id for j in first] == ["e0", "e1"]
    assert all(j.attempt == 1 for j in first)
    (third,) = await store.lease_inbox("default", "pull", 5, 30.0, T)
    assert third.event.id == "e2"
    assert await store.lease_inbox("default", "pull", 5, 30.0, T + 10) == []
    acked = await store.ack_inbox("default", "pull", [first[0].delivery_id, "msg_unknown"], T + 11)
    assert acked == 1
    assert await store.ack_inbox("default", "pull", [first[0].delivery_id], T + 12) == 0
    again = await store.lease_inbox("default", "pull", 5, 30.0, T + 31)  # visibility expired
    assert [(j.event.id, j.attempt) for j in again] == [("e1", 2), ("e2", 2)]
    assert await store.lease_inbox("default", "other", 5, 30.0, T + 31) == []
