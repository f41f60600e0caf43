"""Tenants on every backend: the same ids and keys, different tenants, separate rows; the
operator's (default tenant's) destinations serve every tenant."""

from __future__ import annotations

import asyncio

from ingestd.ingest.envelope import parse_event
from ingestd.model import DeliveryState, Event, OutcomeKind
from ingestd.routing import delivery_id
from ingestd.store import Store
from ingestd.store.protocol import DeadLetterQuery, EventQuery, Routed

T = 1_750_000_000.0


async def settled(store: Store, tenant: str, expected: int) -> list[Event]:
    """A tenant's events once `expected` are listed (or after 10 s). PostgreSQL lists only
    events older than every running transaction of the cluster, other databases' included."""
    for _ in range(200):
        events = (await store.events(EventQuery(tenant_id=tenant))).events
        if len(events) >= expected:
            break
        await asyncio.sleep(0.05)
    return events


def routed(tenant: str, event_id: str, data: int, destinations: tuple[str, ...] = ()) -> Routed:
    sub = parse_event(
        {"source": "shop", "type": "t", "id": event_id, "data": {"n": data}}, tenant_id=tenant
    )
    return Routed(sub, tuple((d, delivery_id(sub.event, d)) for d in destinations))


async def test_two_tenants_share_nothing_but_the_names(store: Store) -> None:
    outcomes = await store.accept([routed("acme", "o-1", 1), routed("globex", "o-1", 2)], T)
    assert [o.kind for o in outcomes] == [OutcomeKind.ACCEPTED, OutcomeKind.ACCEPTED]
    # Each tenant's key (shop:o-1) dedups only against its own event.
    again = await store.accept([routed("acme", "o-1", 1), routed("globex", "o-1", 3)], T + 1)
    assert [o.kind for o in again] == [OutcomeKind.DUPLICATE, OutcomeKind.MISMATCH]
    (only_acme,) = await store.accept([routed("acme", "a-only", 1)], T + 2)
    assert only_acme.kind is OutcomeKind.ACCEPTED

    assert await store.status("globex", "a-only") is None
    globex = await store.status("globex", "o-1")
    assert globex is not None and globex.event.data == {"n": 2}
    globex_events = await settled(store, "globex", 1)
    assert [(e.id, e.data) for e in globex_events] == [("o-1", {"n": 2})]
    assert sorted(e.id for e in await settled(store, "acme", 2)) == ["a-only", "o-1"]
    assert (await store.events(EventQuery())).events == []  # default sees neither


async def test_deleting_an_operator_destination_dead_letters_every_tenants_deliveries(
    store: Store,
) -> None:
    await store.create_destination("default", "hook", {"name": "hook", "kind": "webhook"}, T)
    await store.accept([routed("default", "d-1", 1, ("hook",))], T)
    await store.accept([routed("acme", "a-1", 1, ("hook",))], T)
    assert await store.delete_destination("default", "hook", T + 1)
    for tenant, event_id in (("default", "d-1"), ("acme", "a-1")):
        report = await store.status(tenant, event_id)
        assert report is not None
        assert [d.state for d in report.deliveries] == [DeliveryState.DEAD]
    dead = await store.dead_letters(DeadLetterQuery(tenant_id="acme"))
    assert [item.event.id for item in dead.items] == ["a-1"]
