"""The small per-dialect driver the shared SQL code runs on (delivery administration,
migrations): named queries from the dialect's `queries.sql`, run with named parameters,
alone or inside one transaction.

Each backend implements it in a few dozen lines (sqlite/driver.py, postgres/driver.py);
what really differs per dialect (accept, claim, prune) stays in the backend's store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, NamedTuple, Protocol

Params = Mapping[str, Any]


class Result(NamedTuple):
    """What one statement did: rows changed, and the rows it returned (SELECT, RETURNING)."""

    rowcount: int
    rows: list[Sequence[Any]]


class Transaction(Protocol):
    """Statements of one transaction, committed when its block ends without an error."""

    async def run(self, name: str, params: Params | None = None) -> Result:
        """Run the named query."""

    async def script(self, sql: str) -> None:
        """Run several statements without parameters (a migration file)."""


class Driver(Protocol):
    """One database, as the shared SQL code sees it."""

    async def read(self, name: str, params: Params | None = None) -> list[Sequence[Any]]:
        """The rows of a named query that changes nothing."""

    async def write(self, name: str, params: Params | None = None) -> Result:
        """One named statement in a transaction of its own."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """Several statements, all or nothing."""

    def migration(self) -> AbstractAsyncContextManager[Transaction]:
        """A transaction that holds the database's migration lock (one migrator at a time)."""

    def json(self, value: Any) -> Any:
        """`value` as canonical JSON (sorted keys), in the form the dialect stores it."""

    def texts(self, values: Sequence[str]) -> Any:
        """A list of strings as a parameter (`ids` of the dead-letter and inbox queries)."""

    def wake(self) -> None:
        """Jobs may be due now: wake this process's worker."""

    async def announce_work(self) -> None:
        """Jobs are due now: wake the workers of every process on this database."""
