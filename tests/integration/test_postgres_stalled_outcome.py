"""A worker stopped (SIGSTOP, a paused VM) right after it sent the outcome of a job keeps no
job out of the other workers' reach: the outcome is recorded, or the job is taken over once
its lease has run out (PostgreSQL).

The stop is made deterministic with a loopback relay between the stalled store and the real
server: it reads the protocol, and once the outcome's statement has gone through and been
answered it forwards nothing more from that client, which is what the server sees of a
stopped process. Before the fix the outcome was an explicit transaction (BEGIN, UPDATE,
COMMIT), so the stop left it open with the job's row locked: every claim's
FOR UPDATE SKIP LOCKED skipped it, for as long as the worker stayed stopped (the fault
suite's worker_stalls scenario saw it as leases not taken over within 15 s)."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from ingestd.ingest.envelope import parse_event
from ingestd.routing import delivery_id
from ingestd.store.postgres import PostgresStore
from ingestd.store.protocol import JobResult, Routed, Verdict
from support import free_port

pytestmark = pytest.mark.postgres


class StoppingRelay:
    """Forwards PostgreSQL connections; `stop_after(marker)` lets the next statement whose
    text contains `marker` through, waits for the server's answer to it (ReadyForQuery),
    then forwards nothing more from any client until `resume()`."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self.marker: bytes | None = None
        self.answered = asyncio.Event()
        """Set once the server answered the marked statement (the client is stopped)."""
        self.in_transaction: bool | None = None
        """What that answer said: the server still holds a transaction open for it."""
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    def url(self, pg_url: str) -> str:
        parts = urlsplit(pg_url)
        user = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        netloc = f"{user[0]}@{host}" if len(user) > 1 else host
        query = "&".join(filter(None, [parts.query, "sslmode=disable&gssencmode=disable"]))
        return urlunsplit(parts._replace(netloc=netloc, query=query))

    def stop_after(self, marker: bytes) -> None:
        self.marker = marker

    def resume(self) -> None:
        self._resumed.set()

    async def __aenter__(self) -> StoppingRelay:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.resume()
        assert self._server is not None
        self._server.close()
        for task in self._pipes:
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        marked = asyncio.Event()  # this connection sent the marked statement
        pipes = [
            asyncio.create_task(self._from_client(reader, up_writer, marked)),
            asyncio.create_task(self._from_server(up_reader, writer, marked)),
        ]
        self._pipes.update(pipes)
        await asyncio.gather(*pipes, return_exceptions=True)
        for w in (writer, up_writer):
            w.close()

    async def _from_client(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, marked: asyncio.Event
    ) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            startup = await src.readexactly(4)  # sslmode/gssencmode=disable: no requests
            dst.write(startup + await src.readexactly(struct.unpack("!I", startup)[0] - 4))
            pending = False  # the marked statement is going through
            while True:
                head = await src.readexactly(5)
                body = await src.readexactly(struct.unpack("!I", head[1:])[0] - 4)
                await self._resumed.wait()
                kind = head[:1]
                if self.marker and kind in (b"P", b"Q") and self.marker in body:
                    self.marker, pending = None, True
                if pending and kind in (b"Q", b"S"):  # a simple query, or Sync: sent whole
                    pending = False
                    marked.set()  # before it goes: its answer may come back at once
                    self._resumed.clear()  # stopped: nothing more from any client
                dst.write(head + body)
                await dst.drain()

    async def _from_server(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, marked: asyncio.Event
    ) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                head = await src.readexactly(5)
                body = await src.readexactly(struct.unpack("!I", head[1:])[0] - 4)
                if head[:1] == b"Z" and marked.is_set() and not self.answered.is_set():
                    self.in_transaction = body != b"I"
                    self.answered.set()  # before the client can read it and go on
                dst.write(head + body)
                await dst.drain()


def routed(event_id: str) -> Routed:
    sub = parse_event({"source": "shop", "type": "t", "id": event_id, "data": {}})
    return Routed(sub, (("hook", delivery_id(sub.event, "hook")),))


def rows(pg_url: str, ids: list[int]) -> dict[int, tuple[str, str | None, bool]]:
    """id -> (state, lease owner, locked by an open transaction) of these deliveries."""
    with psycopg.connect(pg_url) as conn:
        free = {
            r[0]
            for r in conn.execute(
                "SELECT id FROM deliveries WHERE id = ANY(%s) FOR UPDATE SKIP LOCKED", (ids,)
            )
        }
        conn.rollback()
        found = conn.execute(
            "SELECT id, state, lease_owner FROM deliveries WHERE id = ANY(%s)", (ids,)
        ).fetchall()
    return {i: (state, owner, i not in free) for i, state, owner in found}


async def test_a_worker_stopped_right_after_sending_an_outcome_keeps_no_job_locked(
    pg_url: str,
) -> None:
    upstream = urlsplit(pg_url)
    server = (upstream.hostname or "127.0.0.1", upstream.port or 5432)
    taker = PostgresStore.from_url(pg_url)
    await taker.open()
    try:
        async with StoppingRelay(server) as relay:
            stalled = PostgresStore.from_url(relay.url(pg_url), pool_max=1)
            await stalled.open()
            finishing: asyncio.Task[int] | None = None
            try:
                now = time.time()
                await taker.accept([routed("sent"), routed("running")], now)
                jobs = await stalled.claim("stalled", 10, 1.0, now)
                assert len(jobs) == 2
                sent, running = sorted(jobs, key=lambda j: j.event.id != "sent")
                assert sent.event.id == "sent"
                # The stalled worker sends one outcome and is stopped just after; the other
                # job's attempt is still running in it.
                relay.stop_after(b"UPDATE deliveries")
                result = JobResult(job_id=sent.id, verdict=Verdict.SUCCEEDED, status_code=200)
                finishing = asyncio.create_task(stalled.finish("stalled", [result], now))
                answered = asyncio.create_task(relay.answered.wait())
                await asyncio.wait(
                    [answered, finishing], timeout=10, return_when=asyncio.FIRST_COMPLETED
                )
                if finishing.done():
                    finishing.result()  # failed before it was answered: say why
                assert answered.done(), "the outcome's statement was not seen"

                # Both leases have run out by the other worker's clock; it claims.
                taken = await taker.claim("taker", 10, 30.0, now + 10)
                seen = rows(pg_url, [sent.id, running.id])
                assert [j.id for j in taken if j.id == running.id] == [running.id], seen
                state, owner, locked = seen[sent.id]
                assert not locked, (
                    f"the stopped worker's open transaction holds delivery {sent.id} "
                    f"({state}, leased by {owner}): no other worker can take it"
                )
                assert relay.in_transaction is False
                # Recorded as sent (its statement committed), or taken over: never held.
                assert state == "succeeded" or sent.id in {j.id for j in taken}, seen
                assert owner != "stalled", seen
            finally:
                relay.resume()
                if finishing is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(finishing, 15)
                await stalled.close()
    finally:
        await taker.close()
