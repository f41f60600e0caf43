"""SQLite connections: one writer thread and connection, reader threads with their own.

All writes of a process go through the one writer (SQLite has one writer anyway), so
accept, claim and finish never fight over locks inside a process. A write is either a
function run on the writer in one transaction (`call`: accept, claim, finish), or named
statements from async code (`transaction`, `write`: the shared SQL); an asyncio lock
keeps a multi-statement transaction from interleaving with another write. Reads use
their own connections and see the last commit (WAL snapshot isolation).
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

from ingestd.errors import StoreUnavailable
from ingestd.store.driver import Params, Result, Transaction

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
        self._lock = asyncio.Lock()

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

    async def _on_writer(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._writer, lambda: fn(self._wconn())
            )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite write failed: {exc}") from exc

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the writer connection in one transaction."""

        def run(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        async with self._lock:
            return await self._on_writer(run)

    async def view(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on a reader connection."""
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self._readers, lambda: fn(self._rconn())
            )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite read failed: {exc}") from exc

    async def close(self) -> None:
        def shut(conn: sqlite3.Connection) -> None:
            conn.close()
            self._write_conn = None

        if self._write_conn is not None:
            await self._on_writer(shut)
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
        try:
            yield _Transaction(self)
        except BaseException:
            await asyncio.shield(self._on_writer(lambda c: c.execute("ROLLBACK")))
            raise
        await self._on_writer(lambda c: c.execute("COMMIT"))

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
