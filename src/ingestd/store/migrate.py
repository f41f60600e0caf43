"""The one migration runner: numbered `store/<dialect>/migrations/NNNN_name.sql` files,
applied under the database's migration lock by whichever process opens it first.

Each file runs once, in one transaction with its row in `ingestd_schema`. Every known
version not recorded there is applied, so a number that landed after a higher one (work
merged from two branches) still runs. A database at a version this code does not know is
refused (`SchemaTooNew`) rather than written to by older code.
"""

from __future__ import annotations

from ingestd.errors import SchemaTooNew
from ingestd.store.driver import Driver
from ingestd.store.sql import migrations


async def migrate(driver: Driver, dialect: str, where: str = "database") -> int:
    """Apply pending migrations; returns the schema version."""
    known = migrations(dialect)
    latest = known[-1][0] if known else 0
    async with driver.migration() as tx:
        await tx.run("schema_table")
        applied = {int(row[0]) for row in (await tx.run("schema_versions")).rows}
        current = max(applied, default=0)
        if current > latest:
            raise SchemaTooNew(
                f"{where} is at schema version {current}, this ingestd knows up to "
                f"{latest}: upgrade ingestd"
            )
        for version, name, sql in known:
            if version not in applied:  # numbers are unique, not always contiguous
                await tx.script(sql)
                await tx.run("record_version", {"version": version, "name": name})
    return latest
