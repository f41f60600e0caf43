"""PostgreSQL connections for the store: one pool per process, and what an outage does.

A pooled connection is borrowed under a deadline; trouble becomes StoreUnavailable (503).
A failed connection marks the database down: until a quick probe connects again, every
call fails at once instead of waiting on the pool (ingest answers 503 within 2 s), and a
fresh pool replaces the old one when it is back. A pool that only ran out of free
connections is overload, not an outage: a probe decides, and the pool is kept.

A transaction whose COMMIT got no answer (the connection was lost, or our deadline ran
out, while the COMMIT was in flight) has an unknown outcome: PostgreSQL may have written
and flushed its commit record before the answer was lost. That is OutcomeUnknown, not
"not stored". It is also what a failed fsync looks like from here: PostgreSQL PANICs on
one (since 12, `data_sync_retry = off`) and every connection is lost. An error the server
answered on a live connection (a deferred constraint, a serialization failure, disk full)
means the transaction was rolled back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from ingestd.errors import OutcomeUnknown, StoreUnavailable

Conn = AsyncConnection[TupleRow]
RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
"""Errors a transaction is simply run again for."""
PROBE_TIMEOUT = 0.75
"""Seconds a connection attempt may take while PostgreSQL is known to be down."""


class PostgresConnections:
    """The pool and its outage handling (mixed into the PostgreSQL store)."""

    def _init_connections(
        self,
        conninfo: str,
        pool_min: int,
        pool_max: int,
        connect_timeout: float,
        timeout: float,
    ) -> None:
        self.conninfo = conninfo
        self._pool_min = pool_min
        self._pool_max = pool_max
        self._connect_timeout = connect_timeout
        self._timeout = timeout
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._checking: asyncio.Task[None] | None = None
        self._down = False
        """A connection failed: until a probe connects, calls fail fast (see _recover)."""
        self._probe: asyncio.Task[bool] | None = None
        self._retired: set[asyncio.Task[None]] = set()

    def _conn_kwargs(self) -> dict[str, Any]:
        return {
            "autocommit": True,
            "connect_timeout": max(2, round(self._connect_timeout)),
            "keepalives_idle": 10,
            "keepalives_interval": 3,
            "keepalives_count": 3,
        }

    @staticmethod
    async def _configure(conn: Conn) -> None:
        # A 202 means durable: never run with synchronous_commit=off, whatever the server says.
        row = await (await conn.execute("SHOW synchronous_commit")).fetchone()
        if row is not None and row[0] == "off":
            await conn.execute("SET synchronous_commit = on")

    @contextlib.asynccontextmanager
    async def _connection(self, timeout: float | None = None) -> AsyncIterator[Conn]:
        """A pooled connection under a deadline; connection trouble is StoreUnavailable."""
        if self._down:
            await self._recover()
        if self._pool is None:
            raise StoreUnavailable("the PostgreSQL store is not open")
        try:
            async with asyncio.timeout(timeout or self._timeout), self._pool.connection() as conn:
                yield conn
        except (*RETRYABLE, psycopg.errors.LockNotAvailable, psycopg.errors.CheckViolation):
            raise
        except PoolClosed as exc:  # waited on a pool retired after an outage: retry anew
            raise StoreUnavailable(f"PostgreSQL connection pool was replaced: {exc}") from exc
        except PoolTimeout as exc:
            # Every connection busy (overload) or none can be made (outage): only a fresh
            # connection attempt tells which, so it decides; an overload is not an outage.
            self._suspect()
            raise StoreUnavailable(f"no PostgreSQL connection became free: {exc}") from exc
        except (psycopg.OperationalError, psycopg.InterfaceError, OSError, TimeoutError) as exc:
            # Not for our own deadline or a cancelled query: the server answered those.
            self._down = not isinstance(exc, TimeoutError | psycopg.errors.QueryCanceled)
            self._check_pool()
            raise StoreUnavailable(f"PostgreSQL is unavailable: {exc}") from exc

    @contextlib.asynccontextmanager
    async def _transaction(self, timeout: float | None = None) -> AsyncIterator[Conn]:
        """A pooled connection in one transaction; a COMMIT that got no answer raises
        OutcomeUnknown (see the module docstring)."""
        borrowed: list[Conn] = []
        committing = False
        try:
            async with self._connection(timeout) as conn, conn.transaction():
                borrowed.append(conn)
                yield conn
                committing = True  # the body is done: leaving the block sends COMMIT
        except StoreUnavailable as exc:
            if committing and commit_unanswered(exc.__cause__, borrowed[0]):
                raise OutcomeUnknown(
                    f"the connection to PostgreSQL was lost while the COMMIT was in flight "
                    f"({exc.__cause__ or exc}); its outcome is unknown"
                ) from exc
            raise

    async def _recover(self) -> None:
        """While PostgreSQL is known to be down, a call costs one shared quick connection
        attempt, not the pool's wait (so ingest answers 503 within 2 s even though calls
        queue behind each other in the group commit). Once an attempt connects, a fresh
        pool replaces the old one, whose reconnection backoff grows with the outage (psycopg
        doubles it without a cap), so service resumes at once, not after the backoff."""
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._reopen(), name="pg-probe")
        if not await asyncio.shield(self._probe):
            raise StoreUnavailable("PostgreSQL is unavailable (reconnecting)")

    def _suspect(self) -> None:
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._try_connect(), name="pg-suspect")

    async def _try_connect(self) -> bool:
        """One quick connection attempt; a failure marks the store down. Short: a caller
        may queue behind another's probe, and both must fit in 2 s."""
        try:
            async with asyncio.timeout(min(self._connect_timeout, PROBE_TIMEOUT)):
                conn = await AsyncConnection.connect(self.conninfo, **self._conn_kwargs())
                await conn.close()
        except (psycopg.Error, OSError, TimeoutError):
            self._down = True
            return False
        return True

    async def _reopen(self) -> bool:
        if not await self._try_connect():
            return False
        if not self._down or self._pool is None:
            return True
        old, self._pool = self._pool, self._new_pool()
        await self._pool.open(wait=False)  # connects in the background; callers wait
        retire = asyncio.create_task(old.close(timeout=self._timeout), name="pg-pool-retire")
        self._retired.add(retire)
        retire.add_done_callback(self._retired.discard)
        self._down = False
        return True

    def _check_pool(self) -> None:
        """After a failure, test the idle connections so the next calls get good ones."""
        if self._pool is None or (self._checking is not None and not self._checking.done()):
            return
        self._checking = asyncio.create_task(self._pool.check(), name="pg-pool-check")

    def _new_pool(self) -> AsyncConnectionPool[Conn]:
        return AsyncConnectionPool(
            self.conninfo,
            min_size=self._pool_min,
            max_size=max(self._pool_min, self._pool_max),
            kwargs=self._conn_kwargs(),
            configure=self._configure,
            open=False,
            timeout=self._connect_timeout,
            reconnect_timeout=3600.0,
            name="ingestd",
        )

    async def _open_pool(self) -> None:
        self._pool = self._new_pool()
        try:
            await self._pool.open(wait=True, timeout=max(self._connect_timeout, 2.0))
        except psycopg.OperationalError as exc:
            await self._pool.close()
            self._pool = None
            raise StoreUnavailable(f"PostgreSQL is unavailable: {exc}") from exc

    async def _close_pool(self) -> None:
        for task in (self._checking, self._probe):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._checking = self._probe = None
        if self._retired:
            await asyncio.gather(*self._retired, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def commit_unanswered(cause: BaseException | None, conn: Conn) -> bool:
    """Whether a COMMIT that failed with `cause` may have committed: no answer came (our
    deadline, a socket error, a lost or broken connection), as opposed to an error the
    server answered on a connection that lives on (the transaction was rolled back)."""
    if isinstance(cause, TimeoutError | OSError):
        return True
    if isinstance(cause, psycopg.Error):
        sqlstate = cause.sqlstate
        return conn.broken or conn.closed or sqlstate is None or sqlstate.startswith("08")
    return False
