"""An on-disk SQLite spool for events the SDK could not deliver, resent after a restart.

Rows hold the exact bytes of the first attempt, so a resend is idempotent on the server.
Several clients (even processes) may share a file: a row is deleted only once it is sent.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    body BLOB NOT NULL,
    reason TEXT NOT NULL,
    spooled_at REAL NOT NULL
)
"""


@dataclass(frozen=True)
class SpooledEvent:
    seq: int
    event_id: str
    body: bytes


class Spool:
    """A FIFO of encoded events in one SQLite file; every method is thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # Python's default transaction handling: `with self._db` is one transaction.
        self._db = sqlite3.connect(self.path, timeout=10.0, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(SCHEMA)

    def put(self, rows: list[tuple[str, bytes]], reason: str) -> None:
        """Append (event id, JSON bytes) rows in one transaction."""
        if not rows:
            return
        now = time.time()
        with self._lock, self._db:
            self._db.executemany(
                "INSERT INTO spool (event_id, body, reason, spooled_at) VALUES (?, ?, ?, ?)",
                [(event_id, body, reason, now) for event_id, body in rows],
            )

    def take(self, limit: int, max_bytes: int) -> list[SpooledEvent]:
        """The oldest rows (left in place until `delete`), at most `max_bytes` of bodies."""
        with self._lock:
            cur = self._db.execute(
                "SELECT seq, event_id, body FROM spool ORDER BY seq LIMIT ?", (limit,)
            )
            rows = [SpooledEvent(seq, eid, bytes(body)) for seq, eid, body in cur]
        out: list[SpooledEvent] = []
        size = 0
        for row in rows:
            if out and size + len(row.body) > max_bytes:
                break
            out.append(row)
            size += len(row.body) + 1
        return out

    def delete(self, seqs: list[int]) -> None:
        if not seqs:
            return
        with self._lock, self._db:
            self._db.executemany("DELETE FROM spool WHERE seq = ?", [(s,) for s in seqs])

    def __len__(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM spool").fetchone()
        return int(count)

    def close(self) -> None:
        with self._lock:
            self._db.close()
