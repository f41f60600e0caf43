"""The embedded backend: one SQLite file in WAL mode (store.py), its SQL (queries.sql) and
numbered migrations (migrations/)."""

from ingestd.store.sqlite.store import SQLiteStore

__all__ = ["SQLiteStore"]
