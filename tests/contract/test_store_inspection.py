"""The console's reads (store.protocol.Inspection) and newest-first paging, on every backend."""

from __future__ import annotations

import pytest

from ingestd.ingest.envelope import parse_event
from ingestd.model import DeliveryState
from ingestd.routing import delivery_id
from ingestd.store import Store
from ingestd.store.protocol import DeadLetterQuery, EventQuery, JobResult, Routed, Verdict

T = 1_750_000_000.0


def routed(
    event_id: str | None,
    destinations: tuple[str, ...],
    *,
    type: str = "t",
    tenant: str = "default",
    key: str | None = None,
    received_at: float = T,
) -> Routed:
    body = {"source": "shop", "type": type, "data": {"n": event_id}}
    if event_id is not None:
        body["id"] = event_id
    sub = parse_event(body, idempotency_key=key, tenant_id=tenant, received_at=received_at)
    return Routed(sub, tuple((d, delivery_id(sub.event, d)) for d in destinations))


async def kill_all(store: Store, now: float) -> None:
    jobs = await store.claim("w", 100, 30.0, now)
    await store.finish(
        "w", [JobResult(job_id=j.id, verdict=Verdict.DEAD, error="boom") for j in jobs], now
    )


async def test_events_newest_first_page_back_without_gaps(store: Store) -> None:
    await store.accept([routed(f"e{i}", (), type="a" if i % 2 else "b") for i in range(7)], T)
    await store.accept([routed("other", (), tenant="acme")], T)
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.events(EventQuery(cursor=cursor, limit=3, newest_first=True, type="a"))
        seen += [e.id for e in page.events]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ["e5", "e3", "e1"]
    everything = await store.events(EventQuery(limit=100, newest_first=True))
    assert [e.id for e in everything.events] == [f"e{i}" for i in range(6, -1, -1)]


async def test_backlog_counts_waiting_and_dead_by_destination(store: Store) -> None:
    await store.accept([routed("x1", ("hook", "mail")), routed("x2", ("hook",))], T)
    await store.accept([routed("y1", ("hook",), tenant="acme")], T)
    before = {b.destination: b for b in await store.destination_backlog(None)}
    assert (before["hook"].pending, before["hook"].dead) == (3, 0)
    assert before["hook"].oldest_due is not None and before["hook"].oldest_due <= T
    assert before["mail"].waiting == 1
    await kill_all(store, T + 1)
    after = {b.destination: b for b in await store.destination_backlog(None)}
    assert (after["hook"].waiting, after["hook"].dead, after["mail"].dead) == (0, 3, 1)
    acme = {b.destination: b for b in await store.destination_backlog("acme")}
    assert set(acme) == {"hook"} and acme["hook"].dead == 1
    # Bounded counts: per stored destination, at most the cap.
    await store.create_destination("default", "hook", {"name": "hook", "kind": "inbox"}, T)
    capped = {b.destination: b for b in await store.destination_backlog(None, dead_cap=2)}
    assert capped["hook"].dead == 2 and "mail" not in capped  # mail is not stored
    waiting_only = await store.destination_backlog("acme", dead_cap=0)
    assert [b.dead for b in waiting_only] == []  # nothing waits for acme, none counted


async def test_count_dead_matches_what_a_replay_touches(store: Store) -> None:
    await store.accept(
        [routed("a", ("hook",), type="paid"), routed("b", ("hook", "mail"), type="refund")], T
    )
    await store.accept([routed("c", ("hook",), tenant="acme")], T)
    await kill_all(store, T + 1)
    everything = DeadLetterQuery(limit=10**9)
    assert await store.count_dead(everything) == 3
    assert await store.count_dead(DeadLetterQuery(destination="hook", limit=10**9)) == 2
    assert await store.count_dead(DeadLetterQuery(event_type="refund", limit=10**9)) == 2
    assert await store.count_dead(DeadLetterQuery(tenant_id="acme", limit=10**9)) == 1
    assert await store.count_dead(DeadLetterQuery(since=T + 2, limit=10**9)) == 0
    mail_id = delivery_id(routed("b", ()).submission.event, "mail")
    assert await store.count_dead(DeadLetterQuery(ids=(mail_id,), limit=10**9)) == 1
    assert await store.count_dead(DeadLetterQuery(limit=2)) == 2  # counted up to the limit
    selection = DeadLetterQuery(event_type="refund", limit=10**9)
    counted = await store.count_dead(selection)
    assert await store.replay_dead(selection, T + 3) == counted
    assert await store.count_dead(everything) == 3 - counted


async def test_inbox_peek_leases_nothing(store: Store) -> None:
    await store.accept([routed("p1", ("pull",)), routed("p2", ("pull",))], T)
    peeked = await store.peek_inbox("default", "pull", 10)
    assert [w.event.id for w in peeked] == ["p1", "p2"]
    assert all(w.delivery.state is DeliveryState.PENDING for w in peeked)
    assert await store.peek_inbox("acme", "pull", 10) == []
    leased = await store.lease_inbox("default", "pull", 10, 30.0, T + 1)
    assert [j.event.id for j in leased] == ["p1", "p2"]  # peeking took none of them
    again = await store.peek_inbox("default", "pull", 1)
    assert [w.delivery.state for w in again] == [DeliveryState.RUNNING]


async def test_idempotency_key_of_an_event(store: Store) -> None:
    now = T + 10
    await store.accept([routed("k1", ())], now)
    await store.accept([routed(None, (), key="order-77", received_at=now)], now)
    await store.accept([routed(None, (), received_at=now)], now)
    page = await store.events(EventQuery(limit=10))
    by_key = {}
    for event in page.events:
        by_key[event.id] = await store.idempotency_key_of(event)
    header_keyed = [e for e in page.events if by_key[e.id] == "order-77"]
    assert by_key["k1"] == "shop:k1"
    assert len(header_keyed) == 1
    assert sorted(v or "" for v in by_key.values()) == ["", "order-77", "shop:k1"]


async def test_a_sparse_filter_pages_in_bounded_steps(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite looks a bounded stretch back per filtered page (no index for the filter):
    pages may come back short or empty, with a cursor, and paging still finds every match."""
    import ingestd.store.sqlite.store as sqlite_store

    monkeypatch.setattr(sqlite_store, "NEWEST_WINDOW", 4)
    await store.accept(
        [routed(f"s{i}", (), type="rare" if i in (1, 9) else "common") for i in range(12)], T
    )
    seen: list[str] = []
    pages = 0
    cursor = None
    while True:
        page = await store.events(
            EventQuery(type="rare", cursor=cursor, limit=5, newest_first=True)
        )
        seen += [e.id for e in page.events]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == ["s9", "s1"]
    if getattr(store, "dialect", "") == "sqlite":
        assert pages == 3  # 12 events, 4 looked at per page
