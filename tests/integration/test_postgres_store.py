"""What only the PostgreSQL backend does: cross-process wake-ups, day partitions, migrations."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import psycopg
import pytest

from ingestd.errors import StoreUnavailable
from ingestd.ingest.envelope import parse_event
from ingestd.model import OutcomeKind
from ingestd.routing import delivery_id
from ingestd.store.postgres import DAY, PostgresStore, day_of, id_base
from ingestd.store.protocol import EventQuery, JobResult, Routed, Verdict
from ingestd.store.sql import migrations
from support import PG_ADMIN

pytestmark = pytest.mark.postgres
T = 1_750_000_000.0


def routed(event_id: str, destinations: tuple[str, ...] = ("hook",)) -> Routed:
    sub = parse_event({"source": "shop", "type": "t", "id": event_id, "data": {}})
    return Routed(sub, tuple((d, delivery_id(sub.event, d)) for d in destinations))


@pytest.fixture
async def stores(pg_url: str) -> AsyncIterator[list[PostgresStore]]:
    """Two stores on one database, as two processes would have."""
    opened = [PostgresStore.from_url(pg_url), PostgresStore.from_url(pg_url)]
    for store in opened:
        await store.open()
    yield opened
    for store in opened:
        await store.close()


def partitions(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        ).fetchall()
    return {r[0] for r in rows}


async def test_an_idle_worker_in_another_process_wakes_on_accept(
    stores: list[PostgresStore],
) -> None:
    api, worker = stores
    await worker.wait_for_work(1.0)  # starts the listener; returns when it listens
    waiter = asyncio.create_task(worker.wait_for_work(10.0))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await api.accept([routed("e")], time.time())
    await asyncio.wait_for(waiter, 2.0)
    assert time.monotonic() - started < 0.5
    (job,) = await worker.claim("w", 1, 30.0, time.time())
    # A retry scheduled by another process wakes this one when it is due.
    retry = JobResult(job_id=job.id, verdict=Verdict.RETRY, run_at=time.time() + 0.3)
    await api.finish("w", [retry], time.time())  # api is not the owner: nothing happens
    await worker.finish("w", [retry], time.time())
    started = time.monotonic()
    await worker.wait_for_work(10.0)
    while time.monotonic() - started < 0.25:
        await worker.wait_for_work(10.0)
    assert time.monotonic() - started < 2.0


async def test_finishing_notifies_the_other_processes_only_when_a_row_was_finished(
    pg_url: str, stores: list[PostgresStore]
) -> None:
    # The NOTIFYs go in the outcome's one statement (no transaction block around it).
    store = stores[0]
    await store.accept([routed("due-now"), routed("later")], time.time())
    jobs = await store.claim("w", 10, 30.0, time.time())
    assert len(jobs) == 2
    now, run_at = time.time(), time.time() + 60
    results = [
        JobResult(job_id=jobs[0].id, verdict=Verdict.DEFER, run_at=now),
        JobResult(job_id=jobs[1].id, verdict=Verdict.RETRY, run_at=run_at),
    ]
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as listener:
        await listener.execute("LISTEN ingestd_work")
        assert await store.finish("not-the-owner", results, now) == 0
        assert await store.finish("w", results, now) == 2
        seen = [n.payload async for n in listener.notifies(timeout=1.0, stop_after=2)]
        seen += [n.payload async for n in listener.notifies(timeout=0.2)]  # no more
    assert seen == ["", repr(run_at)]


async def test_partitions_are_made_ahead_and_dropped_whole(
    pg_url: str, stores: list[PostgresStore]
) -> None:
    store = stores[0]
    today = day_of(time.time())
    assert {f"events_p{today}", f"deliveries_p{today + 2}"} <= partitions(pg_url)
    await store.accept([routed(f"old{i}") for i in range(10)], T)
    await stores[1].accept([routed("warm")], T)  # its process now knows day(T) exists
    await store.accept([routed("stuck")], T + DAY)
    jobs = await store.claim("w", 100, 30.0, T + 10)
    await store.finish("w", [JobResult(job_id=j.id, verdict=Verdict.SUCCEEDED) for j in jobs], T)
    old, stuck = day_of(T), day_of(T + DAY)
    assert {f"events_p{old}", f"events_p{stuck}"} <= partitions(pg_url)
    pruned = await store.prune(T + 5 * DAY, retention=DAY, dead_retention=DAY, idempotency_ttl=1)
    assert pruned.events == 11
    names = partitions(pg_url)
    assert f"events_p{old}" not in names and f"deliveries_p{old}" not in names
    assert f"events_p{stuck}" in names
    with psycopg.connect(pg_url) as conn:
        (ids,) = conn.execute("SELECT count(*) FROM event_ids").fetchone() or (None,)
    assert ids == 1
    # The other process still believes the dropped day exists: it makes it again.
    outcome = (await stores[1].accept([routed("late")], T + 60))[0]
    assert outcome.kind is OutcomeKind.ACCEPTED
    assert f"events_p{old}" in partitions(pg_url)


async def test_concurrent_opens_migrate_once(pg_url: str) -> None:
    many = [PostgresStore.from_url(pg_url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in many))
    for store in many:
        await store.close()
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT version FROM ingestd_schema ORDER BY version").fetchall()
    assert rows == [(version,) for version, _, _ in migrations("postgres")]


async def test_unreachable_database_fails_fast() -> None:
    store = PostgresStore.from_url("postgresql://postgres@127.0.0.1:1/none")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await store.open()
    assert time.monotonic() - started < 3.0


async def test_paging_never_skips_an_event_that_commits_after_later_ones(
    stores: list[PostgresStore], pg_url: str
) -> None:
    """Another API process took a smaller seq but commits last: a reader that paged meanwhile
    must still get it from its last cursor (a cursor on seq alone steps over it)."""
    store, _ = stores
    # A long transaction in another database of the cluster must not hold paging back.
    elsewhere = await psycopg.AsyncConnection.connect(PG_ADMIN)
    await elsewhere.execute("SELECT pg_current_xact_id()")
    await store.accept([routed("first")], T)
    page = await store.events(EventQuery())
    assert [e.id for e in page.events] == ["first"]
    # The slow writer: a seq taken now, its row committed only at the end.
    slow = await psycopg.AsyncConnection.connect(pg_url)
    await slow.execute(
        "INSERT INTO events (seq, tenant_id, id, source, type, occurred_at, received_at, data)"
        " VALUES (%s + nextval('event_counter'), 'default', 'slow', 'shop', 't',"
        " '2025-06-15T00:00:00Z', %s, '{}')",
        (id_base(T), T),
    )
    await store.accept([routed("later")], T)
    await store.accept([routed("latest")], T)

    async def read_on(cursor: str | None) -> tuple[list[str], str | None]:
        ids: list[str] = []
        while True:
            page = await store.events(EventQuery(limit=1, cursor=cursor))
            ids += [e.id for e in page.events]
            if page.next_cursor is None:
                return ids, cursor
            cursor = page.next_cursor

    seen, cursor = await read_on(None)
    await slow.commit()
    await slow.close()
    rest, _ = await read_on(cursor)
    await elsewhere.close()
    assert set(seen + rest) == {"first", "slow", "later", "latest"}


async def test_a_busy_pool_is_overload_not_an_outage(pg_url: str) -> None:
    """Every connection busy: the caller gets StoreUnavailable, but the store is not marked
    down and its pool is not replaced while PostgreSQL answers."""
    store = PostgresStore.from_url(pg_url, pool_min=1, pool_max=1, connect_timeout=0.3)
    await store.open()
    try:
        pool = store._pool
        release = asyncio.Event()

        async def hold() -> None:
            async with store._connection() as conn:
                await conn.execute("SELECT 1")
                await release.wait()

        holder = asyncio.create_task(hold())
        await asyncio.sleep(0.1)
        with pytest.raises(StoreUnavailable, match="no PostgreSQL connection became free"):
            await store.depth()
        assert store._probe is not None
        assert await store._probe  # a fresh connection could be made: PostgreSQL is up
        release.set()
        await holder
        assert not store._down
        await store.ping()
        assert store._pool is pool
    finally:
        await store.close()
