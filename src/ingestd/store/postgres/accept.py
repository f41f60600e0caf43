"""PostgreSQL group commit: a whole group in one `INSERT ... ON CONFLICT DO NOTHING
RETURNING` statement over one JSON document of rows (keys, then event ids, events and
deliveries as data-modifying CTEs), inside the caller's transaction.

Keys that were taken are looked up (and renewed when expired) by a second statement;
duplicates inside a group are resolved in rounds so the first submission wins exactly as
SQLite's one-by-one loop decides. Concurrent groups insert keys in key order, so they wait
on each other instead of deadlocking, and the unique index makes exactly one of several
processes accept a key.

A `source:id` key (Submission.key_is_id) is folded into the event's event_ids row
(migration 0013): two B-trees fewer per event (the idempotency_keys primary key and its
expiry index); when the id is taken, one lookup says duplicate, mismatch or id conflict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from ingestd.errors import StoreUnavailable
from ingestd.model import AcceptOutcome, OutcomeKind, Submission
from ingestd.store.postgres.connections import Conn
from ingestd.store.postgres.partitions import id_base
from ingestd.store.protocol import Routed
from ingestd.store.sql import queries

Q = queries("postgres")
KeyScope = tuple[str, str, str]
"""(tenant, scope, idempotency key): what one key row is unique on."""


async def accept_rounds(
    conn: Conn, batch: Sequence[Routed], now: float, ttl: float
) -> list[AcceptOutcome]:
    """Resolve the group in rounds; each round holds at most one submission per key and
    per event id, the earliest still open, so set-based statements decide exactly as a
    one-by-one loop would. Almost every group needs one round."""
    outcomes: list[AcceptOutcome | None] = [None] * len(batch)
    live: dict[KeyScope, tuple[bytes, str]] = {}
    """Keys known to be present and unexpired in this transaction: (fingerprint, id)."""
    own: set[int] = set()
    """Submissions whose (expired) key row this transaction renewed."""
    pending = list(range(len(batch)))
    for _round in range(len(batch) + 8):
        if not pending:
            break
        this_round: list[int] = []
        later: list[int] = []
        seen_keys: set[KeyScope] = set()
        seen_ids: set[tuple[str, str]] = set()
        for i in pending:
            sub = batch[i].submission
            scope = _key_scope(batch[i])
            if scope is not None and i not in own and scope in live:
                fingerprint, original = live[scope]
                outcomes[i] = _repeat(sub.fingerprint, fingerprint, original)
                continue
            event_key = (sub.event.tenant_id, sub.event.id)
            blocked = (scope is not None and scope in seen_keys) or event_key in seen_ids
            (later if blocked else this_round).append(i)
            if scope is not None:
                seen_keys.add(scope)
            seen_ids.add(event_key)
        if not this_round:  # the rest was answered from `live`: nothing was blocked
            pending = later
            break
        conflicted, held = await _accept_round(conn, batch, this_round, own, now, ttl, outcomes)
        own.difference_update(this_round)
        for i in this_round:
            outcome, scope = outcomes[i], _key_scope(batch[i])
            if outcome is not None and outcome.kind is OutcomeKind.ACCEPTED and scope:
                live[scope] = (batch[i].submission.fingerprint, outcome.id)
        if conflicted:
            later += await _resolve_taken(conn, batch, conflicted, now, ttl, outcomes, live, own)
        if held:
            later += await _resolve_held(conn, batch, held, now, ttl, outcomes, live)
        pending = sorted(later)
    if pending:
        raise StoreUnavailable("idempotency keys kept changing under this group; retry")
    return [o for o in outcomes if o is not None]


async def _accept_round(
    conn: Conn,
    batch: Sequence[Routed],
    items: list[int],
    own: set[int],
    now: float,
    ttl: float,
    outcomes: list[AcceptOutcome | None],
) -> tuple[list[int], list[int]]:
    """Insert one round; returns the submissions whose key was already taken, and the
    folded ones whose id was."""
    rows_in = []
    deliveries = []
    for i in items:
        routed = batch[i]
        sub, ev = routed.submission, routed.submission.event
        rows_in.append(
            _AcceptRow(
                ord=i,
                tenant_id=ev.tenant_id,
                scope=sub.scope,
                key=sub.idempotency_key,
                fingerprint=sub.fingerprint.hex(),
                own_key=i in own,
                folded=sub.key_is_id,
                id=ev.id,
                source=ev.source,
                type=ev.type,
                occurred_at=ev.occurred_at,
                actor_id=ev.actor_id,
                subject=ev.subject,
                data=_encoder.encode(ev.data).decode(),
                trace=ev.trace,
            )
        )
        deliveries += [_DeliveryRow(i, name, did) for name, did in routed.destinations]
    params = {
        "rows": _encoder.encode(rows_in).decode(),
        "deliveries": _encoder.encode(deliveries).decode(),
        "now": now,
        "expires_at": now + ttl,
        "base": id_base(now),
    }
    rows = await (await conn.execute(Q["accept"], params)).fetchall()
    seqs: dict[int, int | None] = {}
    jobs: dict[tuple[int, str], int] = {}
    for ord_, seq, job_id, destination in rows:
        if ord_ is not None:
            seqs[ord_] = seq
        else:
            jobs[(seq, destination)] = job_id
    conflicted: list[int] = []
    held: list[int] = []
    dropped: list[KeyScope] = []
    for i in items:
        sub = batch[i].submission
        ev = sub.event
        if i not in seqs:
            conflicted.append(i)
        elif (seq := seqs[i]) is None:
            if sub.key_is_id:
                held.append(i)
                continue
            outcomes[i] = AcceptOutcome(OutcomeKind.ID_CONFLICT, ev.id)
            if (scope := _key_scope(batch[i])) is not None:
                dropped.append(scope)
        else:
            ids = tuple(jobs[(seq, name)] for name, _ in batch[i].destinations)
            outcomes[i] = AcceptOutcome(OutcomeKind.ACCEPTED, ev.id, ids)
    if dropped:
        tenants, scopes, keys = (list(column) for column in zip(*dropped, strict=True))
        await conn.execute(Q["drop_keys"], {"tenant_id": tenants, "scope": scopes, "key": keys})
    return conflicted, held


def _key_params(items: list[int], subs: list[Submission]) -> dict[str, Any]:
    """The arrays that name each submission's key and id, by its place in the group."""
    return {
        "ord": items,
        "tenant_id": [s.event.tenant_id for s in subs],
        "scope": [s.scope for s in subs],
        "key": [s.idempotency_key for s in subs],
        "id": [s.event.id for s in subs],
    }


async def _resolve_taken(
    conn: Conn,
    batch: Sequence[Routed],
    items: list[int],
    now: float,
    ttl: float,
    outcomes: list[AcceptOutcome | None],
    live: dict[KeyScope, tuple[bytes, str]],
    own: set[int],
) -> list[int]:
    """Duplicate or mismatch for keys held by others; renew expired ones for the next
    round. Returns the submissions that go to the next round."""
    subs = [batch[i].submission for i in items]
    params = _key_params(items, subs) | {
        "fingerprint": [s.fingerprint for s in subs],
        "now": now,
        "expires_at": now + ttl,
    }
    again: list[int] = []
    for ord_, fingerprint, original, expires_at, renewed in await (
        await conn.execute(Q["key_lookup"], params)
    ).fetchall():
        if renewed:
            own.add(ord_)
            again.append(ord_)
        elif fingerprint is None or expires_at < now:
            again.append(ord_)  # deleted or renewed by another process meanwhile: re-read
        else:
            outcomes[ord_] = _repeat(batch[ord_].submission.fingerprint, fingerprint, original)
            scope = _key_scope(batch[ord_])
            assert scope is not None
            live[scope] = (bytes(fingerprint), original)
    return again


async def _resolve_held(
    conn: Conn,
    batch: Sequence[Routed],
    items: list[int],
    now: float,
    ttl: float,
    outcomes: list[AcceptOutcome | None],
    live: dict[KeyScope, tuple[bytes, str]],
) -> list[int]:
    """Folded submissions whose id another event holds: a key row from before the fold
    decides while unexpired (as SQLite's _repeat_of_id), then the holder's own key while
    its received_at + ttl has not passed; otherwise the id is simply taken. Returns the
    submissions whose holder vanished meanwhile (for the next round)."""
    params = _key_params(items, [batch[i].submission for i in items])
    again: list[int] = []
    rows = await (await conn.execute(Q["id_lookup"], params)).fetchall()
    for ord_, legacy, original, expires_at, seq, fingerprint, source, received_at in rows:
        sub = batch[ord_].submission
        stored: bytes | None = None
        if legacy is not None and expires_at >= now:
            stored, holder = bytes(legacy), original
        elif seq is None:
            again.append(ord_)  # pruned meanwhile: the id may be free now
            continue
        elif fingerprint is not None and source == sub.event.source and received_at + ttl >= now:
            stored, holder = bytes(fingerprint), sub.event.id
        if stored is None:
            outcomes[ord_] = AcceptOutcome(OutcomeKind.ID_CONFLICT, sub.event.id)
            continue
        outcomes[ord_] = _repeat(sub.fingerprint, stored, holder)
        scope = _key_scope(batch[ord_])
        assert scope is not None
        live[scope] = (stored, holder)
    return again


def _key_scope(routed: Routed) -> KeyScope | None:
    sub = routed.submission
    if sub.idempotency_key is None:
        return None
    return (sub.event.tenant_id, sub.scope, sub.idempotency_key)


def _repeat(fingerprint: bytes, stored: bytes, original: str) -> AcceptOutcome:
    same = bytes(stored) == fingerprint
    return AcceptOutcome(OutcomeKind.DUPLICATE if same else OutcomeKind.MISMATCH, original)


_encoder = msgspec.json.Encoder()


class _AcceptRow(msgspec.Struct, omit_defaults=False):
    """One submission as `accept` reads it from JSON (json_to_recordset)."""

    ord: int
    tenant_id: str
    scope: str
    key: str | None
    fingerprint: str
    own_key: bool
    folded: bool
    """The key is the event's own `source:id`: kept in its event_ids row."""
    id: str
    source: str
    type: str | None
    occurred_at: str
    actor_id: str | None
    subject: str | None
    data: str
    """The payload as JSON text inside the JSON document: json_to_recordset would turn a
    nested `\\u0000` into text (and fail); a string keeps it escaped for the json column."""
    trace: str | None = None


class _DeliveryRow(msgspec.Struct):
    ord: int
    destination: str
    delivery_id: str
