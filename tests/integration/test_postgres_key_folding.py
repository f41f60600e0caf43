"""PostgreSQL: a `source:id` key lives in its event's event_ids row (migration 0013), not in
idempotency_keys.

The contract suite says what acceptance decides; these tests pin how PostgreSQL stores it
(one unique B-tree per event), that keys written before the fold are still honoured, and
that a database from before 0013 is migrated in place.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from ingestd.ingest.envelope import parse_event
from ingestd.model import OutcomeKind
from ingestd.store.postgres import PostgresStore
from ingestd.store.protocol import Routed

pytestmark = pytest.mark.postgres
T = 1_750_000_000.0
TTL = 3600.0


def routed(event_id: str | None, data: object, key: str | None = None) -> Routed:
    body: dict[str, Any] = {"source": "shop", "type": "order.created", "data": data}
    if event_id is not None:
        body["id"] = event_id
    return Routed(parse_event(body, idempotency_key=key), ())


def rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(sql).fetchall()


async def test_an_id_keyed_event_writes_no_key_row(pg_url: str) -> None:
    store = PostgresStore.from_url(pg_url, idempotency_ttl=TTL)
    await store.open()
    try:
        group = [routed(f"e{i}", {"i": i}) for i in range(3)] + [routed(None, {}, key="K")]
        assert {o.kind for o in await store.accept(group, T)} == {OutcomeKind.ACCEPTED}
        again = await store.accept(
            [routed("e1", {"i": 1}), routed("e2", {"i": 99}), routed("e0", {"i": 0})], T + 1
        )
        late = await store.accept([routed("e0", {"i": 0})], T + TTL + 1)
    finally:
        await store.close()
    assert [o.kind for o in again] == [
        OutcomeKind.DUPLICATE,
        OutcomeKind.MISMATCH,
        OutcomeKind.DUPLICATE,
    ]
    assert [o.id for o in again] == ["e1", "e2", "e0"]
    assert late[0].kind is OutcomeKind.ID_CONFLICT  # expired: the id is simply taken
    assert rows(pg_url, "SELECT key FROM idempotency_keys") == [("K",)]
    held = rows(pg_url, "SELECT id FROM event_ids WHERE fingerprint IS NOT NULL ORDER BY id")
    assert held == [("e0",), ("e1",), ("e2",)]


async def test_a_held_id_of_another_source_is_an_id_conflict(pg_url: str) -> None:
    store = PostgresStore.from_url(pg_url, idempotency_ttl=TTL)
    await store.open()
    try:
        await store.accept([routed("x1", {})], T)
        other = parse_event({"source": "billing", "id": "x1", "data": {}})
        outcome = (await store.accept([Routed(other, ())], T + 1))[0]
    finally:
        await store.close()
    assert outcome.kind is OutcomeKind.ID_CONFLICT


async def test_prune_expires_folded_keys_and_key_of_finds_them(pg_url: str) -> None:
    store = PostgresStore.from_url(pg_url, idempotency_ttl=TTL)
    await store.open()
    try:
        await store.accept([routed("p1", {}), routed("p2", {})], T)
        status = await store.status("default", "p1")
        assert status is not None
        assert await store.idempotency_key_of(status.event) == "shop:p1"
        kept = await store.prune(
            T + 10, retention=10 * TTL, dead_retention=TTL, idempotency_ttl=TTL
        )
        gone = await store.prune(
            T + TTL + 10, retention=10 * TTL, dead_retention=TTL, idempotency_ttl=TTL
        )
        assert await store.idempotency_key_of(status.event) is None
    finally:
        await store.close()
    assert (kept.keys, gone.keys) == (0, 2)
    assert rows(pg_url, "SELECT count(*) FROM event_ids WHERE fingerprint IS NOT NULL") == [(0,)]


async def test_a_key_row_from_before_the_fold_is_still_honoured(pg_url: str) -> None:
    """A database migrated from before 0013: the key sits in idempotency_keys and the
    event_ids row has no fingerprint. Until the key expires its verdicts stand."""
    store = PostgresStore.from_url(pg_url, idempotency_ttl=TTL)
    await store.open()
    original = routed("old-1", {"n": 1})
    try:
        await store.accept([original], T)
        with psycopg.connect(pg_url, autocommit=True) as conn:  # as ingestd before 0013 wrote it
            conn.execute("UPDATE event_ids SET fingerprint = NULL")
            conn.execute(
                "INSERT INTO idempotency_keys VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    "default",
                    "shop",
                    "shop:old-1",
                    original.submission.fingerprint,
                    "old-1",
                    T + TTL,
                ),
            )
        same = await store.accept([routed("old-1", {"n": 1})], T + 10)
        other = await store.accept([routed("old-1", {"n": 2})], T + 10)
        late = await store.accept([routed("old-1", {"n": 1})], T + TTL + 1)
    finally:
        await store.close()
    assert [same[0].kind, other[0].kind] == [OutcomeKind.DUPLICATE, OutcomeKind.MISMATCH]
    assert late[0].kind is OutcomeKind.ID_CONFLICT


async def test_a_database_from_before_0013_is_migrated_in_place(pg_url: str) -> None:
    store = PostgresStore.from_url(pg_url, idempotency_ttl=TTL)
    await store.open()
    await store.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:  # back to schema version 12
        conn.execute("ALTER TABLE event_ids DROP COLUMN fingerprint")
        conn.execute("DELETE FROM ingestd_schema WHERE version = 13")
        conn.execute("INSERT INTO event_ids (tenant_id, id, seq) VALUES ('default', 'before', 1)")
    store = PostgresStore.from_url(pg_url, idempotency_ttl=TTL)
    await store.open()
    try:
        outcomes = await store.accept([routed("after", {}), routed("after", {})], T)
    finally:
        await store.close()
    assert [o.kind for o in outcomes] == [OutcomeKind.ACCEPTED, OutcomeKind.DUPLICATE]
    assert rows(pg_url, "SELECT max(version) FROM ingestd_schema") == [(13,)]
    folded = rows(pg_url, "SELECT id, fingerprint IS NOT NULL FROM event_ids ORDER BY id")
    assert folded == [("after", True), ("before", False)]
