"""The embedded backend: one SQLite file in WAL mode, no server.

Acceptance, claiming and the rest of the job queue are here; the connections (one writer
thread, reader threads) are sqlite/driver.py; delivery administration and migrations are
the shared store/delivery_admin.py and store/migrate.py over that driver. With
`synchronous=FULL` a COMMIT has reached the disk before `accept` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from ingestd.model import (
    AcceptOutcome,
    Job,
    OutcomeKind,
    StatusReport,
    Submission,
)
from ingestd.store.api_keys import KeyStore
from ingestd.store.attempt_rows import attach, lease_row, logged, with_log
from ingestd.store.cursors import BIGINT, decode_cursor, encode_cursor
from ingestd.store.delivery_admin import DeliveryAdmin
from ingestd.store.leases import RescueSchedule
from ingestd.store.migrate import migrate
from ingestd.store.protocol import (
    ArrivalCallback,
    DeliveryView,
    Depth,
    EventPage,
    EventQuery,
    JobResult,
    Pruned,
    Routed,
    Verdict,
)
from ingestd.store.rows import EVENT_COLUMNS as _EVENT_COLUMNS
from ingestd.store.rows import (
    build_status,
    event_filters,
    event_from_row,
    inbox_lease_params,
    record_from_row,
)
from ingestd.store.sql import queries
from ingestd.store.sqlite.driver import SQLiteDriver
from ingestd.store.sqlite.inspection import SQLiteInspection
from ingestd.store.sqlite.recovery import probe_statement

Q = queries("sqlite")
_encode = msgspec.json.encode


def event_params(sub: Submission, received_at: float) -> tuple[Any, ...]:
    """The parameters of `insert_event`, in its column order."""
    ev = sub.event
    return (
        ev.tenant_id,
        ev.id,
        ev.source,
        ev.type,
        ev.occurred_at,
        received_at,
        ev.actor_id,
        ev.subject,
        _encode(ev.data),
        ev.trace,
        sub.fingerprint.hex() if sub.key_is_id else None,
    )


NEWEST_WINDOW = 25_000
"""How many events (by sequence) one filtered newest-first page searches at most."""


class SQLiteStore(SQLiteInspection, KeyStore, DeliveryAdmin):
    """Store protocol on one SQLite database file."""

    dialect = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "FULL",
        idempotency_ttl: float = 24 * 3600.0,
        busy_timeout: float = 5.0,
    ) -> None:
        self.path = str(path)
        self._ttl = idempotency_ttl
        self._db = SQLiteDriver(
            self.path, Q, synchronous=synchronous, busy_timeout=busy_timeout, wake=self._wake
        )
        super().__init__(self._db)
        self._work: asyncio.Event | None = None
        self._next_due: float | None = None
        """Earliest retry time this process wrote: the worker wakes then, not at the next poll."""
        self._rescue = RescueSchedule()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SQLiteStore:
        """`sqlite:///relative/path.db` or `sqlite:////absolute/path.db`."""
        path = url.split("://", 1)[1]
        path = path[1:] if path.startswith("/") else path
        return cls(path or "ingestd.db", **options)

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        self._work = asyncio.Event()
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        await self.migrate()

    async def migrate(self) -> int:
        """Apply pending migrations; returns the schema version."""
        return await migrate(self._db, "sqlite", where=f"database {self.path}")

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> None:
        await self._db.view(lambda c: c.execute("SELECT 1").fetchone())

    async def probe_commit(self) -> None:
        # Rewrites the header page: a WAL frame and, at FULL, an fsync, like any commit.
        # Refused at once while the writer recovers from a failed commit (sqlite/recovery.py).
        await self._db.call(lambda c: c.execute(probe_statement()))

    def _wake(self) -> None:
        if self._work is not None:
            self._work.set()

    # -- acceptance ------------------------------------------------------------------

    async def accept(self, batch: Sequence[Routed], now: float) -> list[AcceptOutcome]:
        outcomes = await self._db.call(lambda c: self._accept_group(c, batch, now))
        if self._work is not None and any(o.delivery_ids for o in outcomes):
            self._work.set()
        return outcomes

    def _accept_group(
        self, c: sqlite3.Connection, batch: Sequence[Routed], now: float
    ) -> list[AcceptOutcome]:
        """Bulk-insert the group when nothing conflicts; otherwise decide row by row."""
        fast = self._accept_bulk(c, batch, now)
        if fast is not None:
            return fast
        return [self._accept_one(c, r, now) for r in batch]

    def _accept_bulk(
        self, c: sqlite3.Connection, batch: Sequence[Routed], now: float
    ) -> list[AcceptOutcome] | None:
        # executemany costs a fraction of row-by-row execute; it is only valid when every
        # row inserts, which the change counts tell us (a savepoint undoes a partial try).
        # Keys in idempotency_keys: explicit and derived ones (a `source:id` key lives in
        # the event's row, unique by events_id).
        keyed = [
            r.submission
            for r in batch
            if r.submission.idempotency_key is not None and not r.submission.key_is_id
        ]
        keys = [(s.event.tenant_id, s.scope, s.idempotency_key) for s in keyed]
        ids = {(r.submission.event.tenant_id, r.submission.event.id) for r in batch}
        if len(set(keys)) != len(keys) or len(ids) != len(batch):
            return None
        c.execute("SAVEPOINT bulk")
        before = c.total_changes
        expires = now + self._ttl
        if keyed:
            c.executemany(
                Q["insert_key"],
                [
                    (*k, s.fingerprint, s.event.id, expires)
                    for k, s in zip(keys, keyed, strict=True)
                ],
            )
        c.executemany(Q["insert_event"], [event_params(r.submission, now) for r in batch])
        if c.total_changes - before != len(keys) + len(batch):
            c.execute("ROLLBACK TO bulk")
            c.execute("RELEASE bulk")
            return None
        last_seq = c.execute("SELECT last_insert_rowid()").fetchone()[0]
        first_seq = last_seq - len(batch) + 1
        rows = [
            (r.submission.event.tenant_id, first_seq + i, did, name)
            for i, r in enumerate(batch)
            for name, did in r.destinations
        ]
        outcomes = []
        if rows:
            c.execute(Q["insert_deliveries"], (_encode(rows), now))
            next_id = c.execute("SELECT last_insert_rowid()").fetchone()[0] - len(rows) + 1
        else:
            next_id = 0
        for r in batch:
            count = len(r.destinations)
            outcomes.append(
                AcceptOutcome(
                    OutcomeKind.ACCEPTED,
                    r.submission.event.id,
                    tuple(range(next_id, next_id + count)),
                )
            )
            next_id += count
        c.execute("RELEASE bulk")
        return outcomes

    def _accept_one(self, c: sqlite3.Connection, routed: Routed, now: float) -> AcceptOutcome:
        sub = routed.submission
        ev = sub.event
        key = sub.idempotency_key
        scope = (ev.tenant_id, sub.scope, key)
        if sub.key_is_id:
            repeat = self._repeat_of_id(c, sub, now)
            if repeat is not None:
                return repeat
            key = None  # the event row itself holds the key
        elif key is not None:
            cur = c.execute(Q["insert_key"], (*scope, sub.fingerprint, ev.id, now + self._ttl))
            if cur.rowcount == 0:
                fp, original, expires_at = c.execute(Q["get_key"], scope).fetchone()
                if expires_at >= now:
                    kind = OutcomeKind.DUPLICATE if fp == sub.fingerprint else OutcomeKind.MISMATCH
                    return AcceptOutcome(kind, original)
                c.execute(Q["renew_key"], (sub.fingerprint, ev.id, now + self._ttl, *scope))
        cur = c.execute(Q["insert_event"], event_params(sub, now))
        if cur.rowcount == 0:
            if key is not None:
                c.execute(Q["delete_key"], scope)
            return AcceptOutcome(OutcomeKind.ID_CONFLICT, ev.id)
        seq = cur.lastrowid
        ids = []
        for name, did in routed.destinations:
            row = c.execute(Q["insert_delivery"], (ev.tenant_id, seq, did, name, now, now, now))
            ids.append(row.lastrowid or 0)
        return AcceptOutcome(OutcomeKind.ACCEPTED, ev.id, tuple(ids))

    def _repeat_of_id(
        self, c: sqlite3.Connection, sub: Submission, now: float
    ) -> AcceptOutcome | None:
        """A `source:id` key already held: duplicate or mismatch while it is unexpired, an id
        conflict otherwise; None when the id is free. A key row written before keys were
        folded into events is honoured until it expires."""
        ev = sub.event
        legacy = c.execute(Q["get_key"], (ev.tenant_id, sub.scope, sub.idempotency_key)).fetchone()
        if legacy is not None and legacy[2] >= now:
            kind = OutcomeKind.DUPLICATE if legacy[0] == sub.fingerprint else OutcomeKind.MISMATCH
            return AcceptOutcome(kind, legacy[1])
        held = c.execute(Q["event_key"], (ev.tenant_id, ev.id)).fetchone()
        if held is None:
            return None
        source, fingerprint, received_at = held
        if source == ev.source and fingerprint is not None and received_at + self._ttl >= now:
            same = fingerprint == sub.fingerprint.hex()
            return AcceptOutcome(OutcomeKind.DUPLICATE if same else OutcomeKind.MISMATCH, ev.id)
        return AcceptOutcome(OutcomeKind.ID_CONFLICT, ev.id)

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
        sweep = self._rescue.due(now, lease)

        def run(c: sqlite3.Connection) -> list[Job]:
            if sweep:
                c.execute(Q["rescue"], (now,))
            if job_ids is not None:
                rows = c.execute(
                    Q["claim_ids"], (worker_id, now + lease, now, _encode(list(job_ids)))
                ).fetchall()
            else:
                rows = c.execute(
                    Q["claim_due"], (worker_id, now + lease, now, limit, _encode(list(exclude)))
                ).fetchall()
            return _jobs(c, rows, traced=True)

        try:
            return await self._db.call(run)
        except BaseException:
            if sweep:
                self._rescue.missed()
            raise

    async def extend(self, worker_id: str, job_ids: Sequence[int], until: float) -> int:
        return await self._db.call(
            lambda c: c.execute(Q["extend"], (until, worker_id, _encode(list(job_ids)))).rowcount
        )

    async def finish(self, worker_id: str, results: Sequence[JobResult], now: float) -> int:
        # Successes, the bulk of any batch, go in one statement per status code (one GIL
        # hand-off each); the rest row by row.
        succeeded: dict[int | None, list[int]] = {}
        for r in results:
            if r.verdict is Verdict.SUCCEEDED:
                succeeded.setdefault(r.status_code, []).append(r.job_id)

        def run(c: sqlite3.Connection) -> int:
            done: set[int] = set()
            for status, ids in succeeded.items():
                params = (now, status, _encode(ids), worker_id)
                done.update(row[0] for row in c.execute(Q["finish_succeeded_many"], params))
            for r in results:
                if r.verdict is not Verdict.SUCCEEDED:
                    cur = c.execute(
                        Q[f"finish_{r.verdict.value}"],
                        (now, r.run_at or now, r.error, r.status_code, r.job_id, worker_id),
                    )
                    if cur.rowcount:
                        done.add(r.job_id)
            # The attempt log, in the same transaction; a lost lease logs nothing.
            c.executemany(Q["insert_attempt"], logged(results, done))
            return len(done)

        count = await self._db.call(run)
        later = [r.run_at for r in results if r.run_at is not None and r.run_at > now]
        if later:
            soonest = min(later)
            self._next_due = soonest if self._next_due is None else min(self._next_due, soonest)
        if self._work is not None and len(later) < sum(
            r.verdict is not Verdict.SUCCEEDED for r in results
        ):
            self._work.set()
        return count

    async def release(self, worker_id: str, job_ids: Sequence[int], now: float) -> None:
        results = [JobResult(job_id=i, verdict=Verdict.DEFER, run_at=now) for i in job_ids]
        await self.finish(worker_id, results, now)

    def watch_arrivals(self, callback: ArrivalCallback) -> None:
        """One process per database file: its acceptor already sees every commit."""

    async def wait_for_work(self, timeout: float) -> None:
        if self._work is None:
            await asyncio.sleep(timeout)
            return
        if self._next_due is not None:
            # Keep the due time until it has passed: an early wake-up must not forget it.
            remaining = self._next_due - time.time()
            if remaining <= 0:
                self._next_due = None
            timeout = min(timeout, max(0.0, remaining))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.wait(), timeout)
        self._work.clear()

    async def lease_inbox(
        self, tenant_id: str, destination: str, limit: int, visibility: float, now: float
    ) -> list[Job]:
        params = inbox_lease_params(tenant_id, destination, limit, visibility, now)

        def run(c: sqlite3.Connection) -> list[Job]:
            rows = c.execute(Q["inbox_lease"], params).fetchall()
            # A lease is an inbox's attempt.
            c.executemany(Q["insert_attempt"], [lease_row(r[0], r[4], now, "leased") for r in rows])
            return _jobs(c, sorted(rows), traced=False)

        return await self._db.call(run)

    # -- reading -----------------------------------------------------------------------

    async def status(self, tenant_id: str, event_id: str) -> StatusReport | None:
        def run(c: sqlite3.Connection) -> StatusReport | None:
            row = c.execute(Q["event_by_id"], (tenant_id, event_id)).fetchone()
            if row is None:
                return None
            rows = c.execute(Q["event_deliveries"], (row[0],)).fetchall()
            report = build_status(event_from_row(row, row[10]), rows)
            ids = _encode([d.id for d in report.deliveries])
            return attach(report, c.execute(Q["attempts_of"], {"ids": ids}).fetchall())

        return await self._db.view(run)

    async def delivery(self, tenant_id: str, delivery_id: str) -> DeliveryView | None:
        def run(c: sqlite3.Connection) -> DeliveryView | None:
            params = {"tenant_id": tenant_id, "delivery_id": delivery_id}
            row = c.execute(Q["delivery_by_id"], params).fetchone()
            if row is None:
                return None
            event = c.execute(Q["event_by_seq"], {"seq": row[11]}).fetchone()
            log = c.execute(Q["attempts_of"], {"ids": _encode([row[0]])}).fetchall()
            return DeliveryView(
                delivery=with_log(record_from_row(row), log),
                event=event_from_row(event, event[10]),
            )

        return await self._db.view(run)

    async def events(self, query: EventQuery) -> EventPage:
        if query.newest_first:
            return await self._newest_events(query)
        clauses, params = event_filters(query, "?")
        # One writer commits in sequence order here, so the last seq read is the cursor.
        clauses.append("seq > ?")
        params.append(decode_cursor(query.cursor, BIGINT)[0] if query.cursor else 0)
        sql = (
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(clauses)} "
            "ORDER BY seq LIMIT ?"
        )
        params.append(query.limit + 1)
        rows = await self._db.view(lambda c: c.execute(sql, params).fetchall())
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        return EventPage(
            [event_from_row(r) for r in rows], encode_cursor(rows[-1][0]) if more else None
        )

    async def _newest_events(self, query: EventQuery) -> EventPage:
        """Newest first. A filtered page looks at most NEWEST_WINDOW events back (no index
        serves source, type or time here): a filter that matches little answers in bounded
        time with an empty or short page whose cursor continues below what was searched."""
        clauses, params = event_filters(query, "?")
        filtered = len(clauses) > 1
        sql = (
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE {' AND '.join(clauses)} "
            "AND seq < ? AND seq >= ? ORDER BY seq DESC LIMIT ?"
        )
        cursor = decode_cursor(query.cursor, BIGINT)[0] if query.cursor else 0

        def run(c: sqlite3.Connection) -> tuple[list[Any], int]:
            top = cursor or c.execute("SELECT coalesce(max(seq), 0) + 1 FROM events").fetchone()[0]
            bottom = max(0, top - NEWEST_WINDOW) if filtered else 0
            return c.execute(sql, [*params, top, bottom, query.limit + 1]).fetchall(), bottom

        rows, bottom = await self._db.view(run)
        if len(rows) > query.limit:
            rows = rows[: query.limit]
            next_cursor: str | None = encode_cursor(rows[-1][0])
        else:
            next_cursor = encode_cursor(bottom) if bottom > 1 else None
        return EventPage([event_from_row(r) for r in rows], next_cursor)

    async def depth(self) -> Depth:
        row = await self._db.view(lambda c: c.execute(Q["depth"]).fetchone())
        return Depth(*row)

    async def prune(
        self, now: float, *, retention: float, dead_retention: float, idempotency_ttl: float
    ) -> Pruned:
        def run(c: sqlite3.Connection) -> Pruned:
            keys = c.execute(Q["prune_keys"], (now,)).rowcount
            # `source:id` keys live in their events' rows: acceptance already reads them as
            # expired by received_at; dropping the fingerprint makes the count and
            # idempotency_key_of agree (one pass, like prunable_events' own walk)
            keys += c.execute(Q["expire_id_keys"], (now - idempotency_ttl,)).rowcount
            c.execute(Q["prune_dead_attempts"], {"cutoff": now - dead_retention})
            dead = c.execute(Q["prune_dead"], (now - dead_retention,)).rowcount
            seqs = [r[0] for r in c.execute(Q["prunable_events"], (now - retention, 50_000))]
            if seqs:
                c.execute(Q["prune_event_attempts"], {"seqs": _encode(seqs)})
                c.execute(Q["prune_event_deliveries"], (_encode(seqs),))
                c.execute(Q["prune_events"], (_encode(seqs),))
            return Pruned(events=len(seqs), dead=dead, keys=keys)

        return await self._db.call(run)


def _jobs(c: sqlite3.Connection, rows: Sequence[Any], *, traced: bool) -> list[Job]:
    """Jobs from leased rows (id, event_seq, delivery_id, destination, attempts, and for
    claims `interrupted`), their events read in one statement (with their trace context
    for the worker's spans)."""
    if not rows:
        return []
    seqs = sorted({r[1] for r in rows})
    events = {
        e[0]: event_from_row(e, e[10] if traced else None)
        for e in c.execute(Q["job_events"], (_encode(seqs),)).fetchall()
    }
    return [
        Job(
            id=r[0],
            delivery_id=r[2],
            destination=r[3],
            attempt=r[4],
            event=events[r[1]],
            interrupted=r[5] if len(r) > 5 else 0,
        )
        for r in rows
        if r[1] in events
    ]
