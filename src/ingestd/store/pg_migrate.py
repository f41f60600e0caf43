"""Numbered PostgreSQL migrations, applied under an advisory lock by whichever process is first.

Each `migrations/postgres/NNNN_name.sql` runs once, in one transaction with its row in
`ingestd_schema`. Every known version not recorded there is applied, so a number that
landed after a higher one (work merged from two branches) still runs. A database at a
version this code does not know is refused (`SchemaTooNew`) rather than written to by
older code.
"""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.rows import TupleRow

from ingestd.errors import SchemaTooNew
from ingestd.store.sql import migrations

MIGRATION_LOCK = 7262353400001
"""pg_advisory_xact_lock key: concurrent `open()`s wait for the first one's migration."""

_SCHEMA_TABLE = """
CREATE TABLE IF NOT EXISTS ingestd_schema (
    version    integer PRIMARY KEY,
    name       text NOT NULL DEFAULT '',
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def migrate(conn: AsyncConnection[TupleRow], where: str = "database") -> int:
    """Apply pending migrations on an autocommit connection; returns the schema version."""
    known = migrations("postgres")
    latest = known[-1][0] if known else 0
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        await conn.execute(_SCHEMA_TABLE)
        rows = await (await conn.execute("SELECT version FROM ingestd_schema")).fetchall()
        applied = {int(r[0]) for r in rows}
        current = max(applied, default=0)
        if current > latest:
            raise SchemaTooNew(
                f"{where} is at schema version {current}, this ingestd knows up to "
                f"{latest}: upgrade ingestd"
            )
        for version, name, sql in known:
            if version not in applied:  # numbers are unique, not always contiguous
                await conn.execute(sql.encode())  # several statements: no parameters
                await conn.execute(
                    "INSERT INTO ingestd_schema (version, name) VALUES (%s, %s)", (version, name)
                )
    return latest
