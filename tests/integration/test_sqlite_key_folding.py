"""SQLite: a `source:id` key lives in its event's row, not in idempotency_keys.

The contract suite says what acceptance decides; these tests pin how SQLite stores it
(one unique B-tree per event) and that keys written before the fold are still honoured.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ingestd.ingest.envelope import parse_event
from ingestd.model import OutcomeKind
from ingestd.store.protocol import Routed
from ingestd.store.sqlite import SQLiteStore

T = 1_750_000_000.0
TTL = 3600.0


def routed(event_id: str | None, data: object, key: str | None = None) -> Routed:
    body = {"source": "shop", "type": "order.created", "data": data}
    if event_id is not None:
        body["id"] = event_id
    return Routed(parse_event(body, idempotency_key=key), ())


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchall()


async def test_an_id_keyed_event_writes_no_key_row(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "x.db", idempotency_ttl=TTL)
    await store.open()
    try:
        group = [routed(f"e{i}", {"i": i}) for i in range(3)] + [routed(None, {}, key="K")]
        assert {o.kind for o in await store.accept(group, T)} == {OutcomeKind.ACCEPTED}
        again = await store.accept([routed("e1", {"i": 1}), routed("e2", {"i": 99})], T + 1)
        assert [o.kind for o in again] == [OutcomeKind.DUPLICATE, OutcomeKind.MISMATCH]
    finally:
        await store.close()
    assert rows(tmp_path / "x.db", "SELECT key FROM idempotency_keys") == [("K",)]
    held = rows(tmp_path / "x.db", "SELECT id FROM events WHERE fingerprint IS NOT NULL")
    assert sorted(r[0] for r in held) == ["e0", "e1", "e2"]


async def test_a_key_row_from_before_the_fold_is_still_honoured(tmp_path: Path) -> None:
    """A database written before migration 0009: the key sits in idempotency_keys and the
    event row has no fingerprint. Until the key expires its verdicts stand."""
    store = SQLiteStore(tmp_path / "x.db", idempotency_ttl=TTL)
    await store.open()
    original = routed("old-1", {"n": 1})
    try:
        await store.accept([original], T)
        sub = original.submission
        with sqlite3.connect(tmp_path / "x.db") as conn:  # as a pre-0009 ingestd wrote it
            conn.execute("UPDATE events SET fingerprint = NULL")
            conn.execute(
                "INSERT INTO idempotency_keys VALUES (?, ?, ?, ?, ?, ?)",
                ("default", "shop", "shop:old-1", sub.fingerprint, "old-1", T + TTL),
            )
        same = await store.accept([routed("old-1", {"n": 1})], T + 10)
        other = await store.accept([routed("old-1", {"n": 2})], T + 10)
        late = await store.accept([routed("old-1", {"n": 1})], T + TTL + 1)
    finally:
        await store.close()
    assert [same[0].kind, other[0].kind] == [OutcomeKind.DUPLICATE, OutcomeKind.MISMATCH]
    assert late[0].kind is OutcomeKind.ID_CONFLICT  # expired: the id is simply taken


async def test_payloads_survive_the_one_statement_insert(tmp_path: Path) -> None:
    data = [
        {"q": 'quote " backslash \\ nul \x00', "u": "é \U0001f600", "f": 0.1, "big": 2**62},
        {"nested": {"a": [1, {"b": None}], "t": True}, "neg": -1.5e-7},
        {},
    ]
    store = SQLiteStore(tmp_path / "x.db", idempotency_ttl=TTL)
    await store.open()
    try:
        await store.accept([routed(f"p{i}", d) for i, d in enumerate(data)], T)
        stored = [await store.status("default", f"p{i}") for i in range(len(data))]
    finally:
        await store.close()
    assert [r.event.data if r else None for r in stored] == data
    assert rows(tmp_path / "x.db", "SELECT DISTINCT typeof(data) FROM events") == [("blob",)]
