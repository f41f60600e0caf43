"""Databases and extra processes for the benchmarks: SQLite beside PostgreSQL.

`database(backend, workdir, name)` yields a fresh database URL: a new SQLite file, or a
new PostgreSQL database made with `CREATE DATABASE` on 127.0.0.1:5432 (trust, user
postgres; INGESTD_BENCH_PG_ADMIN overrides the admin URL) and dropped afterwards.
`pg_backend_cpu_seconds` reads the CPU the database's own backend processes used.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PG_ADMIN = os.environ.get("INGESTD_BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
CLK_TCK = os.sysconf("SC_CLK_TCK")
BACKENDS = ("sqlite", "postgres")


@contextlib.contextmanager
def database(backend: str, workdir: Path, name: str) -> Iterator[str]:
    if backend == "sqlite":
        folder = workdir / f"db-{name}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        yield f"sqlite:///{folder}/ingestd.db"
        return
    import psycopg

    db = f"ingestd_bench_{name.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + "/" + db
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def scalar(url: str, query: str) -> Any:
    """One value from a read-only query, on either backend."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(f"file:{url.removeprefix('sqlite:///')}?mode=ro", uri=True)
        try:
            return conn.execute(query).fetchone()[0]
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(url, autocommit=True) as pg:
        row = pg.execute(query).fetchone()
        return row[0] if row else None


def pg_backend_cpu_seconds(url: str) -> float:
    """CPU used so far by the PostgreSQL backends connected to url's database (0 for SQLite).

    Backends live as long as their connection, so for a pool opened at the start of a
    run this is the database server's CPU for that run (other databases not counted).
    """
    if not url.startswith("postgresql"):
        return 0.0
    import psycopg

    with psycopg.connect(url, autocommit=True) as pg:
        rows = pg.execute(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    total = 0.0
    for (pid,) in rows:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total
