"""Which SQLite failures leave a commit's outcome unknown (issue 14 item 15): an I/O error
raised by COMMIT; not one raised before it (a full database, a busy lock), which stored
nothing and leaves the writer in service. The errors are real SQLite errors where SQLite
can be made to raise them without fault injection (tests/integration fails fsync itself)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import msgspec
import pytest

from ingestd.errors import OutcomeUnknown, StoreUnavailable
from ingestd.store.sqlite.recovery import CommitFailed, commit, commit_outcome_unknown
from ingestd.store.sqlite.store import SQLiteStore


def error(code: int, name: str) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError("disk I/O error" if code & 0xFF == 10 else name)
    exc.sqlite_errorcode = code
    exc.sqlite_errorname = name
    return exc


@pytest.mark.parametrize(
    ("code", "name"),
    [(1034, "SQLITE_IOERR_FSYNC"), (778, "SQLITE_IOERR_WRITE"), (10, "SQLITE_IOERR")],
)
def test_an_io_error_at_commit_is_an_unknown_outcome(code: int, name: str) -> None:
    assert commit_outcome_unknown(error(code, name))


@pytest.mark.parametrize(
    ("code", "name"),
    [(13, "SQLITE_FULL"), (5, "SQLITE_BUSY"), (1, "SQLITE_ERROR"), (8, "SQLITE_READONLY")],
)
def test_other_errors_stored_nothing(code: int, name: str) -> None:
    assert not commit_outcome_unknown(error(code, name))
    assert not commit_outcome_unknown(RuntimeError("not SQLite"))


def test_a_real_full_database_is_not_an_unknown_outcome(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "full.db", isolation_level=None)
    conn.execute("CREATE TABLE t (x)")
    conn.execute("PRAGMA max_page_count = 3")
    conn.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.Error) as full:
        conn.execute("INSERT INTO t VALUES (randomblob(100000))")
    assert full.value.sqlite_errorcode == 13
    assert not commit_outcome_unknown(full.value)


def test_commit_raises_commit_failed_only_for_an_unknown_outcome(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "c.db", isolation_level=None)
    with pytest.raises(sqlite3.OperationalError, match="no transaction is active"):
        commit(conn)  # a real error of COMMIT that is not an I/O error: passed on as is
    conn.execute("BEGIN")
    commit(conn)
    assert not conn.in_transaction


def routed(event_id: str):  # type: ignore[no-untyped-def]
    from ingestd.ingest.envelope import parse_event
    from ingestd.store.protocol import Routed

    return Routed(parse_event({"source": "s", "type": "t", "id": event_id, "data": {}}), ())


async def test_a_busy_store_refuses_without_leaving_service(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "ingestd.db", busy_timeout=0.05)
    await store.open()
    other = sqlite3.connect(tmp_path / "ingestd.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable) as busy:
            await store.accept([routed("a")], time.time())
        assert not isinstance(busy.value, OutcomeUnknown)
        other.execute("ROLLBACK")
        await store.accept([routed("a")], time.time())  # no recovery needed: at once
        assert store._db.health.failure is None
    finally:
        other.close()
        await store.close()


def test_commit_failed_carries_the_error() -> None:
    exc = error(1034, "SQLITE_IOERR_FSYNC")
    assert CommitFailed(exc).error is exc


def test_the_answer_says_whether_a_retry_is_safe() -> None:
    from ingestd.api.ingest import unknown_detail

    keyed = routed("a").submission
    keyless = routed("b").submission
    keyless = msgspec.structs.replace(keyless, idempotency_key=None)
    exc = OutcomeUnknown("COMMIT failed")
    one = unknown_detail(exc, [keyed])
    assert "may have been stored" in one and "Idempotency-Key is safe" in one
    batch = unknown_detail(exc, [keyed, keyless])
    assert "the events of this batch may have been stored" in batch
    assert "1 of them carried no id" in batch and "may store it twice" in batch
