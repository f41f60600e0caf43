"""A PostgreSQL connection lost while the COMMIT is in flight (issue 14 item 15): the
outcome is unknown, not "not stored"; an error the server answers at COMMIT is still "not
stored". A deferred constraint trigger makes COMMIT take a second, and the backend is
terminated (pg_terminate_backend) while it runs: a real lost connection, nothing mocked.
The shared server is not stopped: only this test's own backend is ended."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from ingestd.errors import OutcomeUnknown, StoreUnavailable
from ingestd.ingest.envelope import parse_event
from ingestd.model import OutcomeKind
from ingestd.routing import delivery_id
from ingestd.store.postgres import PostgresStore
from ingestd.store.protocol import Routed

pytestmark = pytest.mark.postgres

SLOW_COMMIT = """
CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id LIKE 'slow%' THEN PERFORM pg_sleep(1.5); END IF;
    IF NEW.id LIKE 'refused%' THEN
        RAISE EXCEPTION 'refused at commit' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON event_ids
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit();
"""


def routed(event_id: str) -> Routed:
    sub = parse_event({"source": "shop", "type": "t", "id": event_id, "data": {}})
    return Routed(sub, (("hook", delivery_id(sub.event, "hook")),))


async def terminate_the_commit(pg_url: str) -> None:
    """End the backend that runs a COMMIT (once one does)."""
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
        for _ in range(200):
            rows = await (
                await admin.execute(
                    "SELECT pid FROM pg_stat_activity WHERE state = 'active' "
                    "AND query = 'COMMIT' AND pid <> pg_backend_pid()"
                )
            ).fetchall()
            if rows:
                await admin.execute("SELECT pg_terminate_backend(%s)", (rows[0][0],))
                return
            await asyncio.sleep(0.02)
    raise AssertionError("no COMMIT was seen running")


async def test_a_connection_lost_during_commit_is_an_unknown_outcome(pg_url: str) -> None:
    store = PostgresStore.from_url(pg_url)
    await store.open()
    try:
        async with store._connection() as conn:
            await conn.execute(SLOW_COMMIT.encode())
        killer = asyncio.create_task(terminate_the_commit(pg_url))
        with pytest.raises(OutcomeUnknown, match="its outcome is unknown"):
            await store.accept([routed("slow-1")], time.time())
        await killer
        # The server answered this COMMIT with an error: rolled back, "not stored".
        with pytest.raises(psycopg.errors.CheckViolation):
            await store.accept([routed("refused-1")], time.time())
        # The retry of the unknown one under the same id: here it had not committed (the
        # trigger runs before the commit record), so it is accepted now, once.
        async with store._connection() as conn:
            await conn.execute("DROP TRIGGER slow_commit ON event_ids")
        for _ in range(100):  # the store marked itself down; it reconnects
            try:
                outcome = (await store.accept([routed("slow-1")], time.time()))[0]
                break
            except StoreUnavailable as exc:
                assert not isinstance(exc, OutcomeUnknown)
                await asyncio.sleep(0.05)
        assert outcome.kind is OutcomeKind.ACCEPTED
        again = (await store.accept([routed("slow-1")], time.time()))[0]
        assert again.kind is OutcomeKind.DUPLICATE
    finally:
        await store.close()
