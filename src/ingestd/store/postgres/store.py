"""The production backend: one PostgreSQL database shared by many API and worker processes.

Driver: psycopg 3 (async) with psycopg_pool, chosen by measurement: through either driver
the group-commit statement (postgres/accept.py) runs at the same rate (12.4k events/s
with psycopg, 11.3k with asyncpg, 500-event groups; benchmarks/pg_driver.py, results in
benchmarks/results/pg-driver-2026-11-23.md). asyncpg wins only for many tiny concurrent
transactions, which group commit avoids. psycopg's pool discards broken connections and
reconnects in the background (the outage story), and it is the one driver to install.

Group commit: `accept` runs a whole group as one statement (postgres/accept.py) in one
transaction with `synchronous_commit` on.

Claiming: `FOR UPDATE SKIP LOCKED`, expired leases first (rescued in the same statement);
`finish` only touches rows still leased by the caller. `accept` and retry scheduling
`NOTIFY ingestd_work`; `wait_for_work` LISTENs on one dedicated connection, so idle
workers wake at once and polling is only the fallback.

Retention: events and deliveries are partitioned by day on their ids; `prune` drops whole
days past the retention (postgres/partitions.py) and deletes the rest row by row.

Destinations, breaker state, dead letters and inbox acknowledgements are the shared
store/delivery_admin.py, migrations the shared store/migrate.py, both over
postgres/driver.py; the pool and its outage handling are postgres/connections.py.

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

import psycopg
from psycopg import AsyncConnection
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from ingestd.errors import StoreUnavailable
from ingestd.model import AcceptOutcome, Event, Job, StatusReport
from ingestd.store.api_keys import KeyStore
from ingestd.store.attempt_rows import ATTEMPT_COLUMNS, attach, logged, with_log
from ingestd.store.cursors import BIGINT, XID8, decode_cursor, encode_cursor
from ingestd.store.delivery_admin import DeliveryAdmin
from ingestd.store.leases import RescueSchedule
from ingestd.store.migrate import migrate
from ingestd.store.postgres.accept import accept_rounds
from ingestd.store.postgres.connections import RETRYABLE, PostgresConnections
from ingestd.store.postgres.driver import WORK_CHANNEL, PostgresDriver
from ingestd.store.postgres.inspection import PostgresInspection
from ingestd.store.postgres.partitions import (
    AHEAD,
    DAY,
    day_of,
    drop_day,
    id_base,
    sweep_event_ids,
)
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
    given_jobs,
)
from ingestd.store.rows import (
    build_status,
    event_filters,
    event_from_row,
    inbox_lease_params,
    job_from_row,
    record_from_row,
)
from ingestd.store.sql import queries

log = logging.getLogger("ingestd.store.postgres")
Q = queries("postgres")
KeyScope = tuple[str, str, str]

CHANNEL = WORK_CHANNEL
"""Payload '' (jobs due now) or a Unix time (the earliest retry); workers LISTEN."""
ARRIVALS = "ingestd_arrivals"
"""Payload: the destinations a commit gave jobs (one per line), or '' (not known)."""
PRUNE_BATCH = 50_000
_EVENT_COLUMNS = (
    "seq, tenant_id, id, source, type, occurred_at, received_at, actor_id, subject, data::text"
)


class PostgresStore(PostgresInspection, PostgresConnections, KeyStore, DeliveryAdmin):
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
        DeliveryAdmin.__init__(
            self, PostgresDriver(self._connection, Q, self._wake, self._transaction)
        )
        self._ttl = idempotency_ttl
        self._prune_timeout = prune_timeout
        self._days: set[int] = set()
        self._work: asyncio.Event | None = None
        self._next_due: float | None = None
        self._wait_until: float | None = None
        self._listener: asyncio.Task[None] | None = None
        self._arrival_callbacks: list[ArrivalCallback] = []
        self._rescue = RescueSchedule()

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
        dbname = conninfo_to_dict(self.conninfo).get("dbname", "?")
        return await migrate(self._sql, "postgres", where=f"database {dbname}")

    def _wake(self) -> None:
        if self._work is not None:
            self._work.set()

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

    async def probe_commit(self) -> None:
        # An xid makes the commit write (and, with synchronous_commit, flush) WAL; a
        # standby or a read-only primary refuses it.
        try:
            async with (
                self._connection(timeout=self._connect_timeout) as conn,
                conn.transaction(),
            ):
                await conn.execute("SELECT pg_current_xact_id()")
        except psycopg.Error as exc:
            raise StoreUnavailable(f"PostgreSQL cannot commit: {exc}") from exc

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
                async with self._transaction() as conn:
                    outcomes = await accept_rounds(conn, batch, now, self._ttl)
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
            sweep = self._rescue.due(now, lease)
            query = Q["claim_due"] if sweep else Q["claim_fresh"]
            params["limit"], params["exclude"] = limit, list(exclude)
        try:
            rows = await self._fetch(query, params)
        except BaseException:
            if job_ids is None and sweep:
                self._rescue.missed()
            raise
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
            **attempt_arrays(logged(results)),
        }
        again = [r for r in results if r.verdict in (Verdict.RETRY, Verdict.DEFER)]
        later = [r.run_at for r in again if r.run_at is not None and r.run_at > now]
        # Jobs due now (''), the earliest retry (its time): sent only if a row was finished.
        params["channel"] = CHANNEL
        params["notify"] = [""] * (len(later) < len(again)) + ([repr(min(later))] if later else [])
        for attempt in range(4):
            try:
                # One statement, no transaction block (see queries.sql): never a COMMIT
                # waiting on this process while it holds the rows.
                async with self._connection() as conn:
                    done = await _scalar(conn, Q["finish"], params)
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

    async def lease_inbox(
        self, tenant_id: str, destination: str, limit: int, visibility: float, now: float
    ) -> list[Job]:
        params = inbox_lease_params(tenant_id, destination, limit, visibility, now)
        return [job_from_row(r) for r in await self._fetch(Q["inbox_lease"], params)]

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
            report = build_status(event_from_row(row, row[10]), await cur.fetchall())
            ids = [d.id for d in report.deliveries]
            cur = await conn.execute(Q["attempts_of"], {"ids": ids})
            return attach(report, await cur.fetchall())

    async def delivery(self, tenant_id: str, delivery_id: str) -> DeliveryView | None:
        async with self._connection() as conn:
            params = {"tenant_id": tenant_id, "delivery_id": delivery_id}
            row = await (await conn.execute(Q["delivery_by_id"], params)).fetchone()
            if row is None:
                return None
            event = await (await conn.execute(Q["event_by_seq"], {"seq": row[11]})).fetchone()
            cur = await conn.execute(Q["attempts_of"], {"ids": [row[0]]})
            assert event is not None  # deliveries go with their event
            return DeliveryView(
                delivery=with_log(record_from_row(row), await cur.fetchall()),
                event=event_from_row(event, event[10]),
            )

    async def events(self, query: EventQuery) -> EventPage:
        # Settled rows only, in (tx, seq) order: see postgres/migrations/0005_event_cursor.sql.
        clauses, params = event_filters(query, "%s")
        after: list[Any] = []
        if query.cursor:
            tx, seq = decode_cursor(query.cursor, XID8, BIGINT)
            after = [str(tx), seq]
        if query.newest_first:
            # Newest first shows what just committed (no settled bound); see EventQuery.
            if after:
                clauses.append("(tx, seq) < (%s::text::xid8, %s)")
                params += after
            order = "events.tx DESC, events.seq DESC"
        else:
            clauses.append("tx < %s::text::xid8")
            params.append(await self._settled_below())
            if after:
                clauses.append("(tx, seq) > (%s::text::xid8, %s)")
                params += after
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
        cursor = encode_cursor(rows[-1][-1], rows[-1][0]) if more else None
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
            # `source:id` keys live in event_ids rows (0013); see expire_id_keys
            key_cutoff = now - idempotency_ttl
            expiry = {"cutoff": key_cutoff, "below": id_base(key_cutoff + DAY)}
            keys += (await conn.execute(Q["expire_id_keys"], expiry)).rowcount
            days = [r[0] for r in await (await conn.execute(Q["partition_days"])).fetchall()]
            for day in days:
                if (day + 1) * DAY <= cutoff and (gone := await drop_day(conn, day, dead_cutoff)):
                    events, dead = events + gone[0], dead + gone[1]
                    self._days.discard(day)
            await sweep_event_ids(conn)
            dead += await _scalar(conn, Q["prune_dead"], {"cutoff": dead_cutoff})
            cur = await conn.execute(Q["prune_events"], {"cutoff": cutoff, "limit": PRUNE_BATCH})
            events += cur.rowcount
        return Pruned(events=events, dead=dead, keys=keys)


async def _scalar(conn: AsyncConnection[TupleRow], query: str, params: Any) -> int:
    """The count a `... SELECT count(*) FROM <the rows changed>` statement returns."""
    row = await (await conn.execute(query, params)).fetchone()
    return int(row[0]) if row else 0


def attempt_arrays(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The attempt log's rows as the parallel arrays `finish` unnests."""
    return {f"a_{name}": [row[name] for row in rows] for name in ATTEMPT_COLUMNS}


def _event(row: Sequence[Any]) -> Event:
    return event_from_row(row)


def _arrivals(batch: Sequence[Routed], outcomes: Sequence[AcceptOutcome]) -> str:
    """ARRIVALS payload for a committed group: the destinations given jobs, one per line,
    or '' when they would not fit PostgreSQL's 8,000-byte payload."""
    payload = "\n".join(sorted(given_jobs(batch, outcomes)))
    return payload if len(payload.encode()) < 7900 else ""
