"""The production backend: one PostgreSQL database shared by many API and worker processes.

Driver: psycopg 3 (async) with psycopg_pool, chosen by measurement: through either driver
the group-commit statement below runs at the same rate (12.4k events/s with psycopg, 11.3k
with asyncpg, 500-event groups; benchmarks/pg_driver.py, results in
benchmarks/results/pg-driver-2026-11-23.md). asyncpg wins only for many tiny concurrent
transactions, which group commit avoids. psycopg's pool discards broken connections and
reconnects in the background (the outage story), and it is the one driver to install.

Group commit: `accept` turns a whole group into one `INSERT ... ON CONFLICT DO NOTHING
RETURNING` statement over one JSON document of rows (keys, then event ids, events and
deliveries as data-modifying CTEs) in one transaction with `synchronous_commit` on. Keys that were
taken are looked up (and renewed when expired) by a second statement; duplicates inside
a group are resolved in rounds so the first submission wins exactly as SQLite's
one-by-one loop decides. Concurrent groups insert keys in key order, so they wait on each
other instead of deadlocking, and PostgreSQL's unique index makes exactly one of several
processes accept a key.

Claiming: `FOR UPDATE SKIP LOCKED`, expired leases first (rescued in the same statement);
`finish` only touches rows still leased by the caller. `accept` and retry scheduling
`NOTIFY ingestd_work`; `wait_for_work` LISTENs on one dedicated connection, so idle
workers wake at once and polling is only the fallback.

Retention: events and deliveries are partitioned by day on their ids (an id is
`day << 32 | counter`, so the id names its partition). `prune` drops a whole day (both
tables, one short ACCESS EXCLUSIVE lock with a lock timeout) once the day is past the
retention and every delivery in it is finished, and falls back to row-wise deletes for
the rest; so old data leaves without long DELETEs or vacuum storms. Only the narrow
`event_ids` (the cross-partition uniqueness of event ids) and idempotency keys are
deleted row by row.

Destinations, breaker state, dead letters and the pull inbox (issue 3) are the mixin in
`pg_delivery.py`; migrations are applied by `pg_migrate.py`.

Outage: every call runs under a deadline and maps connection errors to
`StoreUnavailable` (the API answers 503); the pool replaces broken connections, so
service resumes when PostgreSQL is back, without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

import msgspec
import psycopg
from psycopg import AsyncConnection, sql
from psycopg.rows import TupleRow

from ingestd.errors import InvalidCursor, StoreUnavailable
from ingestd.model import AcceptOutcome, Event, Job, OutcomeKind, StatusReport
from ingestd.store.pg_connections import RETRYABLE, Conn
from ingestd.store.pg_delivery import PostgresDeliveryAdmin
from ingestd.store.pg_inspection import PostgresInspection
from ingestd.store.pg_migrate import migrate
from ingestd.store.protocol import (
    ArrivalCallback,
    Depth,
    EventPage,
    EventQuery,
    JobResult,
    Pruned,
    Routed,
    Verdict,
    given_jobs,
)
from ingestd.store.rows import build_status, event_filters, event_from_row, job_from_row
from ingestd.store.sql import queries

log = logging.getLogger("ingestd.store.postgres")
Q = queries("postgres")
KeyScope = tuple[str, str, str]

DAY = 86400.0
AHEAD = 2
"""Partitions are made for today and this many days ahead."""
CHANNEL = "ingestd_work"
"""Payload '' (jobs due now) or a Unix time (the earliest retry); workers LISTEN."""
ARRIVALS = "ingestd_arrivals"
"""Payload: the destinations a commit gave jobs (one per line), or '' (not known)."""
PRUNE_BATCH = 50_000
_EVENT_COLUMNS = (
    "seq, tenant_id, id, source, type, occurred_at, received_at, actor_id, subject, data::text"
)


def day_of(t: float) -> int:
    return int(t // DAY)


def id_base(t: float) -> int:
    """The first id of the day partition that holds rows made at `t`."""
    return day_of(t) << 32


class PostgresStore(PostgresInspection, PostgresDeliveryAdmin):
    """Store protocol on PostgreSQL (psycopg 3 async + psycopg_pool)."""

    dialect = "postgres"

    def __init__(
        self,
        conninfo: str,
        *,
        idempotency_ttl: float = 24 * 3600.0,
        pool_min: int = 1,
        pool_max: int = 10,
        connect_timeout: float = 2.0,
        timeout: float = 10.0,
        prune_timeout: float = 300.0,
        **_: Any,
    ) -> None:
        self._init_connections(conninfo, pool_min, pool_max, connect_timeout, timeout)
        self._ttl = idempotency_ttl
        self._prune_timeout = prune_timeout
        self._days: set[int] = set()
        self._work: asyncio.Event | None = None
        self._next_due: float | None = None
        self._wait_until: float | None = None
        self._listener: asyncio.Task[None] | None = None
        self._arrival_callbacks: list[ArrivalCallback] = []

    @classmethod
    def from_url(cls, url: str, **options: Any) -> PostgresStore:
        """`postgresql://user@host:port/db` (also `postgres://`, `postgresql+psycopg://`)."""
        return cls("postgresql://" + url.split("://", 1)[1], **options)

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        self._work = asyncio.Event()
        await self._open_pool()
        try:
            await self.migrate()
            await self._ensure_days(day_of(time.time()))
        except BaseException:
            await self.close()
            raise

    async def migrate(self) -> int:
        """Apply pending migrations; returns the schema version."""
        async with self._connection(timeout=120.0) as conn:
            return await migrate(conn, where=f"database {conn.info.dbname}")

    async def close(self) -> None:
        if self._listener is not None and not self._listener.done():
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        self._listener = None
        await self._close_pool()

    async def ping(self) -> None:
        async with self._connection(timeout=self._connect_timeout) as conn:
            await conn.execute("SELECT 1")

    async def _ensure_days(self, day: int) -> None:
        """Make sure the partitions of `day` and the next days exist (cached per process)."""
        if day in self._days and day + 1 in self._days:
            return
        try:
            async with self._connection() as conn, conn.transaction():
                await conn.execute("SET LOCAL lock_timeout = '2s'")
                await conn.execute(Q["ensure_partitions"], {"first": day, "last": day + AHEAD})
        except psycopg.errors.LockNotAvailable:
            log.warning("could not create partitions for day %d yet (lock timeout)", day)
            return
        self._days.update(range(day, day + AHEAD + 1))

    # -- acceptance ------------------------------------------------------------------

    async def accept(self, batch: Sequence[Routed], now: float) -> list[AcceptOutcome]:
        if not batch:
            return []
        await self._ensure_days(day_of(now))
        for attempt in range(4):
            try:
                async with self._connection() as conn, conn.transaction():
                    outcomes = await self._accept_rounds(conn, batch, now)
                    if any(o.delivery_ids for o in outcomes):
                        await conn.execute(
                            "SELECT pg_notify(%s, ''), pg_notify(%s, %s)",
                            (CHANNEL, ARRIVALS, _arrivals(batch, outcomes)),
                        )
                break
            except RETRYABLE as exc:
                if attempt == 3:
                    raise StoreUnavailable(f"accept kept conflicting: {exc}") from exc
            except psycopg.errors.CheckViolation as exc:
                if "partition" not in str(exc) or attempt == 3:
                    raise
                self._days.clear()  # a partition was dropped or never made: make it now
                await self._ensure_days(day_of(now))
        if self._work is not None and any(o.delivery_ids for o in outcomes):
            self._work.set()
        return outcomes

    async def _accept_rounds(
        self, conn: Conn, batch: Sequence[Routed], now: float
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
            if not this_round:
                break
            conflicted = await self._accept_round(conn, batch, this_round, own, now, outcomes)
            own.difference_update(this_round)
            for i in this_round:
                outcome, scope = outcomes[i], _key_scope(batch[i])
                if outcome is not None and outcome.kind is OutcomeKind.ACCEPTED and scope:
                    live[scope] = (batch[i].submission.fingerprint, outcome.id)
            if conflicted:
                later += await self._resolve_taken(
                    conn, batch, conflicted, now, outcomes, live, own
                )
            pending = sorted(later)
        if pending:
            raise StoreUnavailable("idempotency keys kept changing under this group; retry")
        return [o for o in outcomes if o is not None]

    async def _accept_round(
        self,
        conn: Conn,
        batch: Sequence[Routed],
        items: list[int],
        own: set[int],
        now: float,
        outcomes: list[AcceptOutcome | None],
    ) -> list[int]:
        """Insert one round; returns the submissions whose key was already taken."""
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
            "expires_at": now + self._ttl,
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
        dropped: list[KeyScope] = []
        for i in items:
            ev = batch[i].submission.event
            if i not in seqs:
                conflicted.append(i)
            elif (seq := seqs[i]) is None:
                outcomes[i] = AcceptOutcome(OutcomeKind.ID_CONFLICT, ev.id)
                if (scope := _key_scope(batch[i])) is not None:
                    dropped.append(scope)
            else:
                ids = tuple(jobs[(seq, name)] for name, _ in batch[i].destinations)
                outcomes[i] = AcceptOutcome(OutcomeKind.ACCEPTED, ev.id, ids)
        if dropped:
            tenants, scopes, keys = (list(column) for column in zip(*dropped, strict=True))
            await conn.execute(Q["drop_keys"], {"tenant_id": tenants, "scope": scopes, "key": keys})
        return conflicted

    async def _resolve_taken(
        self,
        conn: Conn,
        batch: Sequence[Routed],
        items: list[int],
        now: float,
        outcomes: list[AcceptOutcome | None],
        live: dict[KeyScope, tuple[bytes, str]],
        own: set[int],
    ) -> list[int]:
        """Duplicate or mismatch for keys held by others; renew expired ones for the next
        round. Returns the submissions that go to the next round."""
        subs = [batch[i].submission for i in items]
        params = {
            "ord": items,
            "tenant_id": [s.event.tenant_id for s in subs],
            "scope": [s.scope for s in subs],
            "key": [s.idempotency_key for s in subs],
            "fingerprint": [s.fingerprint for s in subs],
            "id": [s.event.id for s in subs],
            "now": now,
            "expires_at": now + self._ttl,
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

    # -- the job queue ---------------------------------------------------------------

    async def claim(
        self,
        worker_id: str,
        limit: int,
        lease: float,
        now: float,
        *,
        job_ids: Sequence[int] | None = None,
        exclude: Sequence[str] = (),
    ) -> list[Job]:
        params: dict[str, Any] = {"worker": worker_id, "until": now + lease, "now": now}
        if job_ids is not None:
            query, params["ids"] = Q["claim_ids"], list(job_ids)
        else:
            query, params["limit"], params["exclude"] = Q["claim_due"], limit, list(exclude)
        rows = await self._fetch(query, params)
        return [job_from_row(r, r[14], r[15]) for r in rows]

    async def extend(self, worker_id: str, job_ids: Sequence[int], until: float) -> int:
        params = {"until": until, "worker": worker_id, "ids": list(job_ids)}
        async with self._connection() as conn:
            return (await conn.execute(Q["extend"], params)).rowcount

    async def finish(self, worker_id: str, results: Sequence[JobResult], now: float) -> int:
        if not results:
            return 0
        params = {
            "worker": worker_id,
            "now": now,
            "job_id": [r.job_id for r in results],
            "verdict": [r.verdict.value for r in results],
            "run_at": [r.run_at for r in results],
            "error": [r.error for r in results],
            "status_code": [r.status_code for r in results],
        }
        again = [r for r in results if r.verdict in (Verdict.RETRY, Verdict.DEFER)]
        later = [r.run_at for r in again if r.run_at is not None and r.run_at > now]
        for attempt in range(4):
            try:
                async with self._connection() as conn, conn.transaction():
                    done = (await conn.execute(Q["finish"], params)).rowcount
                    if done and len(later) < len(again):
                        await conn.execute("SELECT pg_notify(%s, '')", (CHANNEL,))
                    if done and later:
                        await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, repr(min(later))))
                break
            except RETRYABLE as exc:
                if attempt == 3:
                    raise StoreUnavailable(f"finish kept conflicting: {exc}") from exc
        if later:
            self._due_at(min(later))
        if self._work is not None and len(later) < len(again):
            self._work.set()
        return done

    async def release(self, worker_id: str, job_ids: Sequence[int], now: float) -> None:
        results = [JobResult(job_id=i, verdict=Verdict.DEFER, run_at=now) for i in job_ids]
        await self.finish(worker_id, results, now)

    # -- wake-ups ----------------------------------------------------------------------

    async def wait_for_work(self, timeout: float) -> None:
        if self._work is None:
            await asyncio.sleep(timeout)
            return
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="pg-listen")
        if self._next_due is not None:
            timeout = min(timeout, max(0.0, self._next_due - time.time()))
        self._wait_until = time.time() + timeout
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.wait(), timeout)
        self._work.clear()
        self._wait_until = None
        if self._next_due is not None and self._next_due <= time.time():
            self._next_due = None  # reached; an earlier wake-up keeps it for the next wait

    def _due_at(self, when: float) -> None:
        self._next_due = when if self._next_due is None else min(self._next_due, when)
        if self._work is not None and self._wait_until is not None and when < self._wait_until:
            self._work.set()  # the current wait would oversleep it: wait again, shorter

    def watch_arrivals(self, callback: ArrivalCallback) -> None:
        self._arrival_callbacks.append(callback)
        if self._listener is None or self._listener.done():
            self._listener = asyncio.create_task(self._listen(), name="pg-listen")

    async def _listen(self) -> None:
        """LISTEN on a dedicated connection, reconnecting with backoff while PG is away."""
        delay = 0.1
        while True:
            try:
                conn = await AsyncConnection.connect(self.conninfo, **self._conn_kwargs())
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    await conn.execute(f"LISTEN {ARRIVALS}")
                    delay = 0.1
                    if self._work is not None:
                        self._work.set()  # anything sent while nobody listened
                    async for note in conn.notifies():
                        self._noted(note.channel, note.payload)
            except (psycopg.Error, OSError, ValueError) as exc:
                log.debug("LISTEN connection lost (%s); reconnecting in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _noted(self, channel: str, payload: str) -> None:
        if channel == ARRIVALS:
            names = payload.split("\n") if payload else None
            for callback in self._arrival_callbacks:
                try:
                    callback(names)
                except Exception:
                    log.exception("arrival callback failed")
        elif payload:
            self._due_at(float(payload))
        elif self._work is not None:
            self._work.set()

    # -- reading -----------------------------------------------------------------------

    async def _fetch(self, query: str, params: Any = None) -> list[TupleRow]:
        async with self._connection() as conn:
            return await (await conn.execute(query, params)).fetchall()

    async def status(self, tenant_id: str, event_id: str) -> StatusReport | None:
        async with self._connection() as conn:
            cur = await conn.execute(Q["event_by_id"], {"tenant_id": tenant_id, "id": event_id})
            row = await cur.fetchone()
            if row is None:
                return None
            cur = await conn.execute(Q["event_deliveries"], {"seq": row[0]})
            return build_status(event_from_row(row, row[10]), await cur.fetchall())

    async def events(self, query: EventQuery) -> EventPage:
        # Settled rows only, in (tx, seq) order: see migrations/postgres/0005_event_cursor.sql.
        clauses, params = event_filters(query, "%s")
        if query.newest_first:
            # Newest first shows what just committed (no settled bound); see EventQuery.
            if query.cursor:
                clauses.append("(tx, seq) < (%s::text::xid8, %s)")
                params += _tx_cursor(query.cursor)
            order = "events.tx DESC, events.seq DESC"
        else:
            clauses.append("tx < %s::text::xid8")
            params.append(await self._settled_below())
            if query.cursor:
                clauses.append("(tx, seq) > (%s::text::xid8, %s)")
                params += _tx_cursor(query.cursor)
            order = "events.tx, events.seq"
        text = (
            # Qualified: a bare `tx` in ORDER BY names the output column tx::text, sorted
            # as text (so '10' < '9') and by a full sort instead of the index.
            f"SELECT {_EVENT_COLUMNS}, tx::text AS cursor_tx FROM events "
            f"WHERE {' AND '.join(clauses)} ORDER BY {order} LIMIT %s"
        )
        params.append(query.limit + 1)
        rows = await self._fetch(text, params)
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        cursor = f"{rows[-1][-1]}.{rows[-1][0]}" if more else None
        return EventPage([_event(r) for r in rows], cursor)

    async def _settled_below(self) -> str:
        """A transaction id below which no transaction of this database is still running.

        Read first, in its own statement: the first unassigned id, then the ids of this
        database's running transactions. A transaction with a smaller id that is not among
        them had ended before the events are read (by a later statement, with a later
        snapshot), so every row it wrote is visible then. Transactions of other databases
        on the cluster do not hold the horizon back (pg_snapshot_xmin would).
        """
        ((xmax, running),) = await self._fetch(Q["running_xids"])
        horizon = int(xmax)
        epoch = horizon & ~0xFFFFFFFF
        for xid in running:
            full = epoch | int(xid)
            if full > horizon:  # the 32-bit id wrapped since this transaction began
                full -= 1 << 32
            horizon = min(horizon, full)
        return str(horizon)

    async def depth(self) -> Depth:
        rows = await self._fetch(Q["depth"])
        return Depth(*rows[0])

    # -- retention ---------------------------------------------------------------------

    async def prune(
        self, now: float, *, retention: float, dead_retention: float, idempotency_ttl: float
    ) -> Pruned:
        cutoff, dead_cutoff = now - retention, now - dead_retention
        events = dead = 0
        async with self._connection(self._prune_timeout) as conn:
            keys = (await conn.execute(Q["prune_keys"], {"now": now})).rowcount
            days = [r[0] for r in await (await conn.execute(Q["partition_days"])).fetchall()]
            for day in days:
                if (day + 1) * DAY <= cutoff and (gone := await _drop_day(conn, day, dead_cutoff)):
                    events, dead = events + gone[0], dead + gone[1]
                    self._days.discard(day)
            await _sweep_event_ids(conn)
            dead += (await conn.execute(Q["prune_dead"], {"cutoff": dead_cutoff})).rowcount
            cur = await conn.execute(Q["prune_events"], {"cutoff": cutoff, "limit": PRUNE_BATCH})
            events += cur.rowcount
        return Pruned(events=events, dead=dead, keys=keys)


async def _drop_day(conn: Conn, day: int, dead_cutoff: float) -> tuple[int, int] | None:
    """Drop one day's partitions if every delivery in it is finished (and its dead letters
    are past their retention); returns (events, dead deliveries) dropped."""
    deliveries = sql.Identifier(f"deliveries_p{day}")
    events = sql.Identifier(f"events_p{day}")
    busy = sql.SQL(
        "SELECT EXISTS (SELECT 1 FROM {d} WHERE state IN ('pending', 'running', 'failed'))"
        " OR EXISTS (SELECT 1 FROM {d} WHERE state = 'dead' AND updated_at >= %s)"
    ).format(d=deliveries)

    async def scalar(query: sql.Composed, *params: Any) -> Any:
        row = await (await conn.execute(query, params or None)).fetchone()
        return row[0] if row else None

    if await scalar(busy, dead_cutoff):
        return None
    n_events = await scalar(sql.SQL("SELECT count(*) FROM {e}").format(e=events))
    n_dead = await scalar(
        sql.SQL("SELECT count(*) FROM {d} WHERE state = 'dead'").format(d=deliveries)
    )
    try:
        async with conn.transaction():
            # Short and bounded: new queries queue behind an ACCESS EXCLUSIVE request.
            await conn.execute("SET LOCAL lock_timeout = '200ms'")
            await conn.execute("LOCK TABLE ONLY deliveries, ONLY events IN ACCESS EXCLUSIVE MODE")
            if await scalar(busy, dead_cutoff):
                return None
            await conn.execute(sql.SQL("DROP TABLE {d}, {e}").format(d=deliveries, e=events))
    except psycopg.errors.LockNotAvailable:
        log.info("partitions of day %d are busy; dropping them at the next prune", day)
        return None
    await _delete_event_ids(conn, day)
    return int(n_events), int(n_dead)


async def _delete_event_ids(conn: Conn, day: int) -> None:
    """Forget the event ids of a dropped day, in short batches (no long transaction)."""
    lo, hi = day << 32, (day + 1) << 32
    while (
        await conn.execute(Q["prune_event_ids_range"], {"lo": lo, "hi": hi, "limit": 10_000})
    ).rowcount == 10_000:
        pass


async def _sweep_event_ids(conn: Conn) -> None:
    """Event ids of days whose partitions are gone (a prune interrupted after its DROP)."""
    days = {r[0] for r in await (await conn.execute(Q["partition_days"])).fetchall()}
    for (day,) in await (await conn.execute(Q["event_id_days"])).fetchall():
        if day not in days:
            await _delete_event_ids(conn, day)


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


def _event(row: Sequence[Any]) -> Event:
    return event_from_row(row)


def _tx_cursor(cursor: str) -> tuple[str, int]:
    """`<transaction id>.<seq>` of the last event of the previous page."""
    tx, _, seq = cursor.partition(".")
    # isascii(): str.isdigit() also accepts "²" and Arabic-Indic digits (int() reads those).
    if not (len(tx) <= 20 and tx.isascii() and tx.isdigit() and int(tx) < 2**64):
        raise InvalidCursor()  # xid8 is unsigned 64-bit: a larger one is a DataError
    if not (len(seq) <= 19 and seq.isascii() and seq.isdigit() and int(seq) < 2**63):
        raise InvalidCursor()  # seq is a bigint
    return tx, int(seq)


def _arrivals(batch: Sequence[Routed], outcomes: Sequence[AcceptOutcome]) -> str:
    """ARRIVALS payload for a committed group: the destinations given jobs, one per line,
    or '' when they would not fit PostgreSQL's 8,000-byte payload."""
    payload = "\n".join(sorted(given_jobs(batch, outcomes)))
    return payload if len(payload.encode()) < 7900 else ""
