"""The Driver the shared SQL runs on, over the PostgreSQL store's pool (connections.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import msgspec
from psycopg import AsyncCursor
from psycopg.rows import TupleRow

from ingestd.store.driver import Params, Result, Transaction
from ingestd.store.postgres.connections import Conn

MIGRATION_LOCK = 7262353400001
"""pg_advisory_xact_lock key: concurrent `open()`s wait for the first one's migration."""
WORK_CHANNEL = "ingestd_work"
"""NOTIFY channel of due jobs; payload '' (now) or a Unix time (the earliest retry)."""


class PostgresDriver:
    """Named queries on pooled connections (each call borrows one under its deadline)."""

    def __init__(
        self,
        connection: Callable[..., AbstractAsyncContextManager[Conn]],
        queries: dict[str, str],
        wake: Callable[[], None],
        transaction: Callable[..., AbstractAsyncContextManager[Conn]] | None = None,
    ) -> None:
        self._connection = connection
        self._transaction = transaction
        """A connection in a transaction whose unanswered COMMIT is OutcomeUnknown."""
        self.queries = queries
        self._wake = wake

    async def read(self, name: str, params: Params | None = None) -> list[Sequence[Any]]:
        async with self._connection() as conn:
            return (await _run(conn, self.queries[name], params)).rows

    async def write(self, name: str, params: Params | None = None) -> Result:
        async with self._connection() as conn:  # autocommit: one statement, one transaction
            return await _run(conn, self.queries[name], params)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        if self._transaction is not None:
            async with self._transaction() as conn:
                yield _Transaction(conn, self.queries)
            return
        async with self._connection() as conn, conn.transaction():
            yield _Transaction(conn, self.queries)

    @contextlib.asynccontextmanager
    async def migration(self) -> AsyncIterator[Transaction]:
        async with self._connection(timeout=120.0) as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            yield _Transaction(conn, self.queries)

    def json(self, value: Any) -> str:
        return msgspec.json.encode(value, order="sorted").decode()

    def texts(self, values: Sequence[str]) -> list[str]:
        return list(values)

    def wake(self) -> None:
        self._wake()

    async def announce_work(self) -> None:
        async with self._connection() as conn:
            await conn.execute("SELECT pg_notify(%s, '')", (WORK_CHANNEL,))
        self._wake()


class _Transaction:
    def __init__(self, conn: Conn, queries: dict[str, str]) -> None:
        self._conn = conn
        self._queries = queries

    async def run(self, name: str, params: Params | None = None) -> Result:
        return await _run(self._conn, self._queries[name], params)

    async def script(self, sql: str) -> None:
        await self._conn.execute(sql.encode())  # several statements: no parameters


async def _run(conn: Conn, sql: str, params: Params | None) -> Result:
    cursor: AsyncCursor[TupleRow] = await conn.execute(sql, params)
    rows = await cursor.fetchall() if cursor.description is not None else []
    return Result(cursor.rowcount, list(rows))
