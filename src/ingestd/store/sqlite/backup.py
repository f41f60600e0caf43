"""A consistent copy of a live SQLite store with SQLite's online backup API (never `cp`).

`cp` of a database in WAL mode copies the main file without the WAL, or a WAL half
written: the copy may miss acknowledged events or be corrupt. The backup API copies pages
through a read transaction instead, so the copy is one committed state of the database
while servers keep writing. It runs in a single step: a step-by-step backup restarts each
time another connection writes, and under steady ingest it might never finish.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ingestd.errors import ConfigError, StoreUnavailable

BUSY_TIMEOUT_MS = 10_000


@dataclass(frozen=True, slots=True)
class BackupReport:
    """What was written: where, how big, and what the copy holds."""

    path: str
    bytes: int
    schema_version: int
    events: int
    deliveries: int


def sqlite_path(database_url: str) -> str:
    """The file of a `sqlite:///…` URL; a ConfigError for any other backend."""
    scheme = database_url.split("://", 1)[0].split("+", 1)[0]
    if scheme != "sqlite":
        raise ConfigError(
            f"ingestd backup copies SQLite stores; INGESTD_DATABASE_URL is {scheme}://. "
            "Back up PostgreSQL with pg_dump or a base backup with WAL archiving "
            "(see the production checklist)"
        )
    path = database_url.split("://", 1)[1]
    return (path[1:] if path.startswith("/") else path) or "ingestd.db"


def backup(source: str | Path, target: str | Path, *, overwrite: bool = False) -> BackupReport:
    """Copy the database at `source` to `target` (a new file, complete or absent)."""
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise ConfigError(f"no SQLite database at {source}")
    if target.exists() and not overwrite:
        raise ConfigError(f"{target} exists: choose a new path or pass --force")
    if target.is_dir():
        raise ConfigError(f"{target} is a directory: give the path of the backup file")
    if not target.parent.is_dir():
        raise ConfigError(f"directory {target.parent} does not exist")
    if target.resolve() == source.resolve():
        raise ConfigError("the backup path is the database itself")
    # Written beside the target, then renamed: a crash leaves no half backup under its name.
    partial = target.with_name(f".{target.name}.partial-{os.getpid()}")
    try:
        _copy(source, partial)
        report = _inspect(partial, str(target))
        _fsync(partial)
        partial.replace(target)
        _fsync(target.parent)
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"backup of {source} failed: {exc}") from exc
    finally:
        for leftover in (partial, *(partial.with_name(partial.name + s) for s in SIDECARS)):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return report


SIDECARS = ("-journal", "-wal", "-shm")


def _copy(source: Path, partial: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, isolation_level=None)
    dst = sqlite3.connect(partial, isolation_level=None)
    try:
        src.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        src.backup(dst, pages=-1)  # one step: one read transaction, one snapshot
        # The copy says WAL in its header like its source; a backup is one self-contained
        # file, so it is switched to a rollback journal (the server turns WAL back on).
        dst.execute("PRAGMA journal_mode = DELETE")
    finally:
        dst.close()
        src.close()


def _inspect(partial: Path, name: str) -> BackupReport:
    conn = sqlite3.connect(f"file:{partial}?mode=ro", uri=True, isolation_level=None)
    try:
        problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise StoreUnavailable(f"the copy failed its integrity check: {problems[:3]}")
        version = conn.execute("SELECT max(version) FROM ingestd_schema").fetchone()[0]
        events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        deliveries = conn.execute("SELECT count(*) FROM deliveries").fetchone()[0]
    except sqlite3.OperationalError as exc:
        raise ConfigError(f"not an ingestd database (run `ingestd migrate` first): {exc}") from exc
    finally:
        conn.close()
    return BackupReport(name, partial.stat().st_size, int(version or 0), events, deliveries)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
