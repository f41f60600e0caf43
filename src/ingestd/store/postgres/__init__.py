"""The production backend: PostgreSQL shared by many processes (store.py), its pool
(connections.py), its SQL (queries.sql) and numbered migrations (migrations/)."""

from ingestd.store.postgres.partitions import DAY, day_of, id_base
from ingestd.store.postgres.store import PostgresStore

__all__ = ["DAY", "PostgresStore", "day_of", "id_base"]
