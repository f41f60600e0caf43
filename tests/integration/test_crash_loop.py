"""A handler whose attempt kills the process (os._exit: nothing to catch) runs twice, then
its delivery is dead-lettered with that reason instead of crash-looping every restart
(issue 14 item 3). Real `ingestd serve` processes on one SQLite file."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import httpx

from support import ServerProcess, free_port, handler_env, wait_for

DESTINATIONS = [
    {"name": "fatal", "kind": "handler", "handler": "handlers.sinks:dies",
     "event_types": ["die.*"]},
    {"name": "fine", "kind": "handler", "handler": "handlers.sinks:ok",
     "event_types": ["die.*"]},
]  # fmt: skip


async def run_until_it_dies(
    server: ServerProcess, *, start: bool = True, timeout: float = 30.0
) -> int:
    """(Start the server and) wait for its handler to end it; its exit status."""
    if start:
        with contextlib.suppress(RuntimeError):  # it may die before it is ready
            await server.start()
    assert server.proc is not None
    deadline = time.monotonic() + timeout
    while server.proc.poll() is None:
        assert time.monotonic() < deadline, f"still running:\n{server.logs()}"
        await asyncio.sleep(0.05)
    return server.proc.returncode


async def test_a_handler_that_kills_its_process_twice_is_dead_lettered(tmp_path: Path) -> None:
    env = handler_env(tmp_path, DESTINATIONS, INGESTD_LEASE_SECONDS="1")
    port = free_port()
    server = ServerProcess(tmp_path, port=port, env=env)
    await server.start()
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post("/ingest", json={"source": "crash", "type": "die.now"})
    assert response.status_code == 202
    event_id = response.json()["id"]
    assert await run_until_it_dies(server, start=False) == 17
    # The second run claims it again after the lease, runs it alone (the other delivery of
    # the event, in flight at the first crash too, is not blamed) and dies the same way...
    server = ServerProcess(tmp_path, port=port, env=env)
    assert await run_until_it_dies(server) == 17
    assert (tmp_path / "dies.log").read_text().split() == [event_id, event_id]
    # ...the third is not killed: the delivery is dead without a third attempt.
    server = ServerProcess(tmp_path, port=port, env=env)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:

            async def settled() -> dict[str, object] | None:
                body = (await http.get(f"/ingest/{event_id}/status")).json()
                states = {d["destination"]: d["state"] for d in body["destinations"]}
                return body if states == {"fatal": "dead", "fine": "succeeded"} else None

            status = await wait_for(settled, timeout=20)
            fatal = next(d for d in status["destinations"] if d["destination"] == "fatal")
            assert "ended during its attempt 2 times" in fatal["last_error"]
            dead = (await http.get("/dlq")).json()
            assert event_id in str(dead)
            assert (await http.get("/health")).status_code == 200
        assert (tmp_path / "dies.log").read_text().split() == [event_id, event_id]
        assert server.proc is not None and server.proc.poll() is None
    finally:
        await server.stop()
