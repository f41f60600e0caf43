"""A worker stalled (SIGSTOP) past its lease cannot complete the job it lost (PostgreSQL).

The other faults on PostgreSQL (processes killed under load, the server stopped) are in
the fault suite, tests/faults/test_faults.py, with figures.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from pg_cluster import Cluster, CountingReceiver, Reply, running, webhook_toml
from support import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.mark.timeout(90)
async def test_a_worker_stalled_past_its_lease_cannot_complete_the_job_it_lost(
    tmp_path: Path, pg_url: str
) -> None:
    # The first attempt hangs 3 s then fails; any later one succeeds. With a one-attempt
    # schedule the stalled worker's late outcome would be `dead`: visible if recorded.
    receiver = await CountingReceiver(
        lambda _path, _id, nth: Reply(500, delay=3.0) if nth == 1 else Reply(200)
    ).start()
    toml = webhook_toml(receiver, ("hook-a",)).replace(
        "retry_schedule = [0, 0.5, 1, 1, 1, 2, 2, 2, 5, 5]", "retry_schedule = [0]"
    )
    cluster = Cluster(tmp_path, pg_url, toml, apis=1, workers=1, INGESTD_LEASE_SECONDS="1.5")
    try:
        async with running(cluster):
            stalled = cluster.workers[0]
            assert stalled.proc is not None
            async with httpx.AsyncClient(base_url=cluster.urls[0], timeout=10) as client:
                r = await client.post("/ingest", json={"source": "s", "type": "t", "id": "e1"})
                assert r.status_code == 202, r.text
                while receiver.total < 1:
                    await asyncio.sleep(0.01)
                stalled.signal(signal.SIGSTOP)  # mid-delivery, holding the lease
                try:
                    owner = lease_of(pg_url, "e1")
                    assert owner[0] == "running" and f":{stalled.proc.pid}:" in owner[1]
                    taker = cluster._process("worker", free_port())
                    cluster.workers.append(taker)
                    await taker.start()

                    async def completed() -> dict[str, Any] | None:
                        body: dict[str, Any] = (await client.get("/ingest/e1/status")).json()
                        return body if body["status"] == "completed" else None

                    done = await wait_status(completed, 20.0)
                finally:
                    stalled.signal(signal.SIGCONT)
                (d,) = done["destinations"]
                assert (d["state"], d["attempts"], d["last_status_code"]) == ("succeeded", 2, 200)
                # The stalled worker wakes, reads its 500 and decides `dead` (logged)...
                await wait_log(stalled.log, "dead after attempt 1", 15.0)
                await asyncio.sleep(1.0)  # ...and its outcome reaches the store, or not
                assert stalled.proc.poll() is None
                after = (await client.get("/ingest/e1/status")).json()
                assert after["status"] == "completed"
                (d,) = after["destinations"]
                assert (d["state"], d["attempts"], d["last_status_code"]) == ("succeeded", 2, 200)
                assert d["last_error"] is None
                state, owner_after = lease_of(pg_url, "e1")
                assert (state, owner_after) == ("succeeded", None)
        # Both attempts reached the receiver under the same webhook-id.
        ((_, arrivals),) = receiver.seen.items()
        assert arrivals == ["e1", "e1"]
    finally:
        await receiver.stop()


def lease_of(pg_url: str, event_id: str) -> tuple[str, str | None]:
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT d.state, d.lease_owner FROM deliveries d JOIN events e "
            "ON e.seq = d.event_seq WHERE e.id = %s",
            (event_id,),
        ).fetchone()
    assert row is not None
    return row[0], row[1]


async def wait_status(check: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while (value := await check()) is None:
        assert time.monotonic() < deadline, "not completed in time"
        await asyncio.sleep(0.05)
    return value


async def wait_log(log: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{log.read_text()[-2000:]}"
        await asyncio.sleep(0.05)
