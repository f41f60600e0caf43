"""SQLite connections: one writer thread and connection, reader threads with their own.

All writes of a process go through the one writer (SQLite has one writer anyway), so
accept, claim and finish never fight over locks inside a process. A write is either a
function run on the writer in one transaction (`call`: accept, claim, finish), or named
statements from async code (`transaction`, `write`: the shared SQL); an asyncio lock
keeps a multi-statement transaction from interleaving with another write. Reads use
their own connections and see the last commit (WAL snapshot isolation).

A COMMIT that fails with an I/O error (a failed fsync) leaves its outcome unknown: it
raises OutcomeUnknown, the writer connection is taken out of service, writes are refused
until a recovery with a new connection commits again (sqlite/recovery.py says why).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import msgspec

from ingestd.errors import OutcomeUnknown, StoreUnavailable
from ingestd.store.driver import Params, Result, Transaction
from ingestd.store.sqlite.recovery import (
    CommitFailed,
    WriterHealth,
    commit,
    probe_statement,
)

T = TypeVar("T")


class SQLiteDriver:
    """The connections of one database file, and the Driver the shared SQL runs on."""

    def __init__(
        self,
        path: str,
        queries: dict[str, str],
        *,
        synchronous: str = "FULL",
        busy_timeout: float = 5.0,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.path = path
        self.queries = queries
        self._synchronous = synchronous
        self._busy_ms = int(busy_timeout * 1000)
        self._wake = wake
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._readers = ThreadPoolExecutor(2, thread_name_prefix="sqlite-reader")
        self._local = threading.local()
        self._write_conn: sqlite3.Connection | None = None
        self._spent: sqlite3.Connection | None = None
        """The writer taken out of service after a failed commit, closed only once a new
        connection is open (closing the last connection would checkpoint and could lead
        the next open to replay the failed commit from the WAL: see recovery.py)."""
        self._lock = asyncio.Lock()
        self.health = WriterHealth(path)
        self._recovery: asyncio.Task[None] | None = None

    # -- connections ---------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.execute("PRAGMA cache_size = -65536")
        conn.execute("PRAGMA temp_store = MEMORY")
        return conn

    def _wconn(self) -> sqlite3.Connection:
        if self._write_conn is None:
            self._write_conn = self._connect()
        return self._write_conn

    def _rconn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = 1")
            self._local.conn = conn
        return conn

    async def _on_writer(self, fn: Callable[[sqlite3.Connection], T], *, refuse: bool = True) -> T:
        if refuse and (refusal := self.health.refusal()) is not None:
            raise StoreUnavailable(refusal)
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._writer, lambda: fn(self._wconn())
            )
        except CommitFailed as exc:
            self._failed(exc.error)
            raise OutcomeUnknown(
                f"SQLite COMMIT failed ({exc.error.sqlite_errorname}: {exc.error}) after its "
                "frames may have reached the WAL; its outcome is unknown"
            ) from exc.error
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite write failed: {exc}") from exc

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the writer connection in one transaction."""

        def run(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                if conn.in_transaction:  # an I/O error may have rolled it back already
                    conn.execute("ROLLBACK")
                raise
            commit(conn)
            return result

        async with self._lock:
            return await self._on_writer(run)

    # -- a failed commit and the recovery ------------------------------------------

    def _failed(self, error: sqlite3.Error) -> None:
        """Take the writer out of service and start recovering (on the event loop)."""
        if self._write_conn is not None:
            if self._spent is not None:  # cannot be: one writer fails at a time
                self._spent.close()
            self._spent, self._write_conn = self._write_conn, None
        self.health.failed(error)
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.create_task(self._recover(), name="sqlite-recovery")

    async def _recover(self) -> None:
        while True:
            await asyncio.sleep(self.health.delay())
            try:
                async with self._lock:
                    await asyncio.get_running_loop().run_in_executor(self._writer, self._reopen)
            except sqlite3.Error as exc:
                self.health.attempt_failed(exc)
                continue
            self.health.recovered()
            return

    def _reopen(self) -> None:
        """A new writer connection, then the spent one closed, then a probe commit (on
        the writer thread); the new one stays spent until its probe has committed."""
        conn = self._connect()
        spent, self._spent = self._spent, conn
        if spent is not None:
            spent.close()  # not the last connection: `conn` keeps the wal-index alive
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(probe_statement())
        conn.execute("COMMIT")
        self._spent, self._write_conn = None, conn

    async def view(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on a reader connection."""
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._readers, lambda: fn(self._rconn())
            )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite read failed: {exc}") from exc

    async def close(self) -> None:
        if self._recovery is not None and not self._recovery.done():
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery

        def shut() -> None:
            # The spent one last: while it is open the writer's close is not the last.
            for conn in (self._write_conn, self._spent):
                if conn is not None:
                    conn.close()
            self._write_conn = self._spent = None

        await asyncio.get_running_loop().run_in_executor(self._writer, shut)
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)

    # -- the Driver ----------------------------------------------------------------

    async def read(self, name: str, params: Params | None = None) -> list[Sequence[Any]]:
        sql = self.queries[name]
        return await self.view(lambda c: c.execute(sql, params or {}).fetchall())

    async def write(self, name: str, params: Params | None = None) -> Result:
        sql = self.queries[name]
        return await self.call(lambda c: _result(c.execute(sql, params or {})))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._lock, self._begun("BEGIN IMMEDIATE") as tx:
            yield tx

    @contextlib.asynccontextmanager
    async def migration(self) -> AsyncIterator[Transaction]:
        # EXCLUSIVE: the file's migration lock, against other processes opening it.
        async with self._lock, self._begun("BEGIN EXCLUSIVE") as tx:
            yield tx

    @contextlib.asynccontextmanager
    async def _begun(self, begin: str) -> AsyncIterator[Transaction]:
        await self._on_writer(lambda c: c.execute(begin))

        def rollback(conn: sqlite3.Connection) -> None:
            if conn.in_transaction:
                conn.execute("ROLLBACK")

        try:
            yield _Transaction(self)
        except BaseException:
            await asyncio.shield(self._on_writer(rollback, refuse=False))
            raise
        await self._on_writer(commit, refuse=False)

    def json(self, value: Any) -> bytes:
        return msgspec.json.encode(value, order="sorted")

    def texts(self, values: Sequence[str]) -> bytes:
        return msgspec.json.encode(list(values))  # read back by json_each()

    def wake(self) -> None:
        self._wake()

    async def announce_work(self) -> None:
        self._wake()  # one process per database file: its own worker is every worker


class _Transaction:
    def __init__(self, driver: SQLiteDriver) -> None:
        self._driver = driver

    async def run(self, name: str, params: Params | None = None) -> Result:
        sql = self._driver.queries[name]
        return await self._driver._on_writer(lambda c: _result(c.execute(sql, params or {})))

    async def script(self, sql: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            # executescript() would commit first: statement by statement keeps one transaction.
            for statement in sql.split(";\n"):
                if statement.strip():
                    conn.execute(statement)

        await self._driver._on_writer(run)


def _result(cursor: sqlite3.Cursor) -> Result:
    rows = cursor.fetchall()
    return Result(cursor.rowcount, rows)
