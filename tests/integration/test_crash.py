"""kill -9 mid-load: every event that got a 202 is stored exactly once and reaches completed."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path

import httpx
import pytest

from support import ServerProcess, all_events, free_port, handler_env, wait_for

CLIENTS = 32
PER_CLIENT = 170  # 5,440 events in all
BATCH = 15  # requests alternate: one single event, then a batch of 15


def event(client: int, n: int) -> dict[str, object]:
    return {"source": "crash", "id": f"c{client}-{n}", "type": "load.test", "data": {"n": n}}


class Load:
    """32 clients sending their events; what each request was answered is recorded."""

    def __init__(self) -> None:
        self.acked: set[str] = set()
        """Ids that got a 202 (or an `accepted` batch item)."""
        self.duplicates: set[str] = set()
        self.unanswered: set[str] = set()
        """Sent, but the connection died before an answer: stored or not, both are fine."""
        self.next = dict.fromkeys(range(CLIENTS), 0)

    def record(self, ids: list[str], status: int, body: object) -> None:
        if status == 202:
            self.acked.update(ids)
        elif status == 200:
            self.duplicates.update(ids)
        elif status == 207:
            assert isinstance(body, dict)
            for event_id, result in zip(ids, body["results"], strict=True):
                if result["status"] == "accepted":
                    self.acked.add(event_id)
                else:
                    assert result["status"] == "duplicate", result
                    self.duplicates.add(event_id)
        else:
            raise AssertionError(f"unexpected {status}: {body}")

    async def client(self, c: httpx.AsyncClient, n: int, retry: set[str]) -> None:
        # First resend what went unanswered (same ids: idempotency makes this safe).
        for event_id in sorted(retry):
            client_no, seq = event_id[1:].split("-")
            r = await c.post("/ingest", json=event(int(client_no), int(seq)))
            self.record([event_id], r.status_code, r.json())
        while self.next[n] < PER_CLIENT:
            start = self.next[n]
            count = BATCH if start % (BATCH + 1) == 1 else 1
            count = min(count, PER_CLIENT - start)
            events = [event(n, i) for i in range(start, start + count)]
            ids = [str(e["id"]) for e in events]
            self.next[n] = start + count
            try:
                if count == 1:
                    r = await c.post("/ingest", json=events[0])
                else:
                    r = await c.post("/ingest/batch", json={"events": events})
            except httpx.TransportError:
                self.unanswered.update(ids)
                return
            self.record(ids, r.status_code, r.json())


def delivery_states(db: Path) -> dict[str, list[str]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT e.id, d.state FROM events e JOIN deliveries d ON d.event_seq = e.seq "
            "WHERE e.source = 'crash'"
        ).fetchall()
    states: dict[str, list[str]] = {}
    for event_id, state in rows:
        states.setdefault(event_id, []).append(state)
    return states


@pytest.mark.slow
async def test_kill_9_mid_load_loses_no_acknowledged_event(tmp_path: Path) -> None:
    env = handler_env(
        tmp_path,
        [{"name": "sink", "kind": "handler", "handler": "handlers.sinks:ok"}],
        INGESTD_LEASE_SECONDS="1",  # leases of the killed worker expire quickly
    )
    load = Load()
    server = ServerProcess(tmp_path, port=free_port(), env=env)
    await server.start()
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=server.url, timeout=10, limits=limits) as c:
        tasks = [asyncio.create_task(load.client(c, n, set())) for n in range(CLIENTS)]

        async def midway() -> bool:
            return len(load.acked) >= 2000

        await wait_for(midway, timeout=60, interval=0.01)
        server.kill()  # SIGKILL: no shutdown code runs
        await asyncio.gather(*tasks)
    acked_before_kill = set(load.acked)
    assert len(acked_before_kill) >= 2000
    assert load.unanswered, "the kill should have cut some requests off"

    # Restart on the same database; the clients resend what went unanswered and go on.
    server = ServerProcess(tmp_path, port=free_port(), env=env)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as c:
            # Every acknowledged event survived the kill.
            stored_after_kill = {e["id"] for e in await all_events(c, source="crash")}
            assert acked_before_kill <= stored_after_kill
            retry = {n: {i for i in load.unanswered if i.startswith(f"c{n}-")} for n in range(32)}
            load.unanswered = set()
            await asyncio.gather(*(load.client(c, n, retry[n]) for n in range(CLIENTS)))
            assert not load.unanswered

            total = CLIENTS * PER_CLIENT
            assert total >= 5000
            stored = [e["id"] for e in await all_events(c, source="crash")]
            counts = Counter(stored)
            assert not [i for i, k in counts.items() if k > 1], "an event is stored twice"
            assert load.acked <= set(counts)
            # Everything sent was either acknowledged now or before (a 200 duplicate).
            assert set(counts) == load.acked | load.duplicates
            assert len(counts) == total

            # Every stored event reaches completed, including the jobs the dead worker held.
            db = Path(server.database_url.removeprefix("sqlite:///"))

            async def all_succeeded() -> bool:
                states = delivery_states(db)
                return len(states) == total and all(s == ["succeeded"] for s in states.values())

            await wait_for(all_succeeded, timeout=45, interval=0.25)
            sample = sorted(acked_before_kill)[::50]
            responses = await asyncio.gather(*(c.get(f"/ingest/{i}/status") for i in sample))
            assert {r.json()["status"] for r in responses} == {"completed"}
    finally:
        await server.stop()
