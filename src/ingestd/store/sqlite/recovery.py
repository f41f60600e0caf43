"""A failed COMMIT whose outcome is unknown, and what the writer does until it can commit.

Which failures leave a commit's outcome unknown (SQLite 3.40's wal.c, `walFrames`, with
`journal_mode=WAL` and `synchronous=FULL`):

- COMMIT writes the transaction's pages as frames at the end of the WAL file, the last one
  marked as a commit frame, then fsyncs the WAL. Only after the fsync succeeds does it add
  the frames to the wal-index (the -shm file) and advance its header (`mxFrame`). When the
  fsync fails, COMMIT returns SQLITE_IOERR_FSYNC (1034) with the frames already written
  (at least into the page cache) but the wal-index header not advanced; `sqlite3VdbeHalt`
  then rolls the transaction back (`sqlite3RollbackAll`), which in WAL mode only reloads
  the header from the wal-index (`sqlite3WalUndo`): every connection goes on seeing the
  database without the transaction, and the next commit writes its frames over it.
- But nothing erased those frames: their checksums chain from the last committed frame
  and the salt is the WAL's own. Whoever rebuilds the wal-index from the WAL file (crash
  recovery after a `kill -9`, or the next open after the *last* connection closed without
  deleting the WAL) finds a valid commit frame and replays the transaction. Stored or not
  depends on what happens next: the fault suite saw such an event, answered "not stored",
  delivered after a restart. And with a real I/O error the kernel may have dropped those
  pages (Linux marks them clean after a failed writeback), so even a replay is not durable.
- So an IOERR-family error (primary code 10) raised by COMMIT means: outcome unknown. The
  frames are written only by COMMIT (with a 64 MiB cache the body never spills; a spill's
  frames carry no commit mark and are rolled back the same way), so an error raised before
  COMMIT (SQLITE_FULL while inserting, BUSY, a refusal while recovering) stored nothing.
  SQLITE_FULL raised by COMMIT also stored nothing: it comes from write() (an fsync failure
  is always IOERR_FSYNC, whatever its errno) and the commit frame is the last write, so it
  never reached the file whole, and recovery checks each frame's checksum. IOERR_FSYNC of
  the WAL header (the first commit after a checkpoint restarted the WAL) happens before any
  frame: answering "unknown" there is merely cautious.

What the writer does then (PostgreSQL PANICs on a failed fsync for the same reason: after
it, the kernel's word on what is on disk is worth nothing). The writer connection is taken
out of service and every write is refused at once ("not stored", 503) until a recovery
succeeds: open a new writer connection, then close the spent one, then a probe commit
(which writes a frame and fsyncs the WAL) -- tried at a bounded rate. The new connection is
opened *before* the spent one is closed, deliberately: a connection that closes last
checkpoints and deletes the WAL, and when that checkpoint fails (its fsync fails too) the
WAL stays, the next open rebuilds the wal-index from it and resurrects the failed
transaction from frames that were never synced (seen by experiment with strace). With a
connection kept open the wal-index survives, the failed transaction stays rolled back, and
the probe commit overwrites its first frame, which breaks the checksum chain of the rest:
after a successful recovery the failed commit is definitely not stored, and a client's
retry with the same ids is accepted (202) exactly once. Only a crash before that (or a
failing shutdown) leaves it to WAL recovery, and then the retry answers 200 duplicate.
"""

from __future__ import annotations

import logging
import sqlite3
import time

log = logging.getLogger("ingestd.store.sqlite")

SQLITE_IOERR = 10
"""The primary result code of every SQLITE_IOERR_* extended code (errcode & 0xff)."""
RECOVERY_DELAYS = (0.25, 0.5, 1.0)
"""Seconds before each recovery attempt; the last repeats (at most one attempt a second)."""
PROBE = "PRAGMA user_version = {stamp}"
"""A commit that writes a frame (it rewrites the header page) and so, at FULL, fsyncs."""


def probe_statement() -> str:
    return PROBE.format(stamp=time.time_ns() // 1_000_000 & 0x7FFFFFFF)


def commit_outcome_unknown(exc: BaseException) -> bool:
    """True when `exc`, raised by COMMIT, leaves the commit's outcome unknown (see above)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.Error) and code is not None and code & 0xFF == SQLITE_IOERR


class CommitFailed(Exception):
    """COMMIT raised `error` and its outcome is unknown (raised on the writer thread)."""

    def __init__(self, error: sqlite3.Error) -> None:
        super().__init__(str(error))
        self.error = error


def commit(conn: sqlite3.Connection) -> None:
    """COMMIT, raising CommitFailed when its outcome is unknown."""
    try:
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if commit_outcome_unknown(exc):
            raise CommitFailed(exc) from exc
        raise


class WriterHealth:
    """Whether the writer may write, and the one log line per change of that state."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.failure: str | None = None
        """Why writes are refused (the failed commit's error), or None: writes go ahead."""
        self.since = 0.0
        self.attempts = 0
        self.refused = 0

    def refusal(self) -> str | None:
        """The detail of a refused write, or None when writes go ahead."""
        if self.failure is None:
            return None
        self.refused += 1
        return (
            "not stored: the store is recovering after a failed fsync "
            f"({self.failure}); writes resume once a probe commit reaches the disk"
        )

    def failed(self, error: sqlite3.Error) -> None:
        self.failure = f"{getattr(error, 'sqlite_errorname', 'SQLITE_IOERR')}: {error}"
        self.since = time.monotonic()
        self.attempts = self.refused = 0
        log.error(
            "SQLite %s: a COMMIT failed (%s); its outcome is unknown (the WAL may hold it). "
            "Refusing writes until a new writer connection's probe commit reaches the disk",
            self.path,
            self.failure,
        )

    def attempt_failed(self, exc: BaseException) -> None:
        self.attempts += 1
        if self.attempts == 1:
            log.warning(
                "SQLite %s: recovery failed, retrying every %.0f s at most: %s",
                self.path,
                RECOVERY_DELAYS[-1],
                exc,
            )

    def delay(self) -> float:
        return RECOVERY_DELAYS[min(self.attempts, len(RECOVERY_DELAYS) - 1)]

    def recovered(self) -> None:
        log.warning(
            "SQLite %s: recovered after a failed commit: a probe commit reached the disk "
            "after %d failed attempt(s), %.1f s, %d write(s) refused meanwhile; writes resume",
            self.path,
            self.attempts,
            time.monotonic() - self.since,
            self.refused,
        )
        self.failure = None
