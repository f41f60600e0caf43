"""`ingestd backup PATH`: a consistent copy of the SQLite store, safe while it serves."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ingestd.config import Settings
from ingestd.store.sqlite.backup import backup, sqlite_path


def add_commands(sub: Any, commands: dict[str, Any]) -> None:
    p = sub.add_parser(
        "backup",
        help="copy the SQLite store to PATH with SQLite's online backup (safe while serving)",
        description="Copy the SQLite database of INGESTD_DATABASE_URL to PATH with SQLite's "
        "online backup API: one consistent state, taken while servers keep writing. "
        "To restore, stop ingestd, put the file in place of the database (removing its "
        "-wal and -shm files) and start it again.",
    )
    p.add_argument("path", help="the new backup file")
    p.add_argument("--force", action="store_true", help="replace PATH if it exists")
    commands["backup"] = run


def run(args: argparse.Namespace, settings: Settings) -> int:
    report = backup(sqlite_path(settings.database_url), args.path, overwrite=args.force)
    print(
        json.dumps(
            {
                "backup": report.path,
                "bytes": report.bytes,
                "schema_version": report.schema_version,
                "events": report.events,
                "deliveries": report.deliveries,
            }
        )
    )
    return 0
