"""Python load generators for the ingestd benchmark.

- `closed_loop`: the fallback when wrk is not installed. N keep-alive HTTP/1.1
  connections, each sending its next request as soon as the previous answer arrived
  (closed loop, like wrk, so it has the same coordinated-omission blind spot), spread
  over a few processes with raw asyncio streams. It is slower than wrk: on a small
  machine it, not the server, may be the limit. Its result has wrk's shape.
- `paced`: an open-loop sender for the end-to-end test. It sends at a fixed rate no
  matter how slowly answers come back, and measures each request from the moment it
  was *due*, so a stall shows up in the latencies instead of silently slowing the load.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections.abc import Callable
from typing import Any


def event_json(event_id: str) -> str:
    """About 300 bytes, the same event as benchmarks/wrk/ingest.lua sends."""
    return (
        '{"source":"bench","type":"page.viewed","id":"' + event_id + '",'
        '"actor_id":"user-48213","data":{"url":"https://shop.example.com/products/12345'
        '?ref=spring","referrer":"https://www.google.com/",'
        '"session":"s-8f14e45fceea167a5a36dedd4bea2543",'
        '"ua":"Mozilla/5.0 (X11; Linux x86_64)","w":1920,"h":1080}}'
    )


def body_for(mode: str, prefix: str, counter: int, size: int) -> tuple[bytes, int]:
    """(request body, next counter) for mode noop | single | batch."""
    if mode == "noop":
        return event_json("noop").encode(), counter
    if mode == "single":
        return event_json(f"{prefix}-{counter + 1}").encode(), counter + 1
    events = ",".join(event_json(f"{prefix}-{counter + i + 1}") for i in range(size))
    return ('{"events":[' + events + "]}").encode(), counter + size


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def latency_summary_us(values_s: list[float]) -> dict[str, float]:
    """wrk-like latency figures in microseconds from a list of seconds."""
    values = sorted(v * 1e6 for v in values_s)
    if not values:
        return {k: 0.0 for k in ("min", "mean", "max", "p50", "p90", "p95", "p99", "p999")}
    return {
        "min": values[0],
        "mean": sum(values) / len(values),
        "max": values[-1],
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "p999": percentile(values, 99.9),
    }


# -- closed loop (wrk fallback) --------------------------------------------------------


async def _connection(
    host: str,
    port: int,
    path: str,
    mode: str,
    prefix: str,
    size: int,
    deadline: float,
    latencies: list[float],
    counts: dict[str, int],
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
    counter = 0
    try:
        while time.monotonic() < deadline:
            body, counter = body_for(mode, prefix, counter, size)
            request = (head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            started = time.perf_counter()
            writer.write(request)
            headers = await reader.readuntil(b"\r\n\r\n")
            status = int(headers[9:12])
            length = 0
            for line in headers.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            counts["requests"] += 1
            counts["bytes"] += len(headers) + length
            if status >= 400:
                counts["non2xx"] += 1
    except (OSError, asyncio.IncompleteReadError):
        counts["errors"] += 1
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def _closed_loop_process(args: tuple[Any, ...]) -> dict[str, Any]:
    host, port, path, mode, prefix, size, connections, duration = args
    latencies: list[float] = []
    counts = {"requests": 0, "bytes": 0, "non2xx": 0, "errors": 0}

    async def main() -> float:
        deadline = time.monotonic() + duration
        started = time.monotonic()
        await asyncio.gather(
            *(
                _connection(
                    host, port, path, mode, f"{prefix}-{i}", size, deadline, latencies, counts
                )
                for i in range(connections)
            )
        )
        return time.monotonic() - started

    runner: Callable[[Any], float]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    elapsed = runner(main())
    return {"latencies": latencies, "elapsed": elapsed, **counts}


def closed_loop(
    host: str,
    port: int,
    path: str,
    mode: str,
    tag: str,
    *,
    connections: int = 64,
    duration: float = 10.0,
    size: int = 100,
    processes: int = 2,
) -> dict[str, Any]:
    """Closed-loop load; returns the same shape as the wrk script's WRK_JSON line."""
    per = [
        connections // processes + (1 if i < connections % processes else 0)
        for i in range(processes)
    ]
    jobs = [
        (host, port, path, mode, f"{tag}-p{i}", size, n, duration) for i, n in enumerate(per) if n
    ]
    with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
        parts = pool.map(_closed_loop_process, jobs)
    latencies = [v for part in parts for v in part["latencies"]]
    elapsed = max(part["elapsed"] for part in parts)
    summary = latency_summary_us(latencies)
    return {
        "requests": sum(p["requests"] for p in parts),
        "duration_us": int(elapsed * 1e6),
        "bytes": sum(p["bytes"] for p in parts),
        "errors": {
            "connect": 0,
            "read": sum(p["errors"] for p in parts),
            "write": 0,
            "status": sum(p["non2xx"] for p in parts),
            "timeout": 0,
        },
        "non2xx": sum(p["non2xx"] for p in parts),
        "latency_us": summary,
        "generator": "python closed loop (benchmarks/loadgen.py)",
    }


# -- open loop at a fixed rate (end-to-end test) ---------------------------------------


async def paced(
    base_url: str,
    tag: str,
    *,
    rate: float = 1000.0,
    duration: float = 10.0,
    connections: int = 64,
) -> list[dict[str, Any]]:
    """Send `rate` single events per second for `duration` seconds, open loop.

    Returns one record per event: id, due (wall time it was due), sent, answered
    (wall time the answer arrived), status. Latency is counted from `due`, so a
    slow server cannot hide behind a sender that waits for it.
    """
    import aiohttp

    total = int(rate * duration)
    records: list[dict[str, Any]] = []
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(index: int, due: float) -> None:
            event_id = f"{tag}-{index}"
            record: dict[str, Any] = {"id": event_id, "due": due, "sent": time.time()}
            try:
                async with session.post(
                    base_url + "/ingest", data=event_json(event_id), headers=headers
                ) as response:
                    await response.read()
                    record["status"] = response.status
            except (aiohttp.ClientError, TimeoutError) as exc:
                record["status"] = 0
                record["error"] = repr(exc)
            record["answered"] = time.time()
            records.append(record)

        # Warm the connection pool so the first events do not pay for TCP connects.
        await asyncio.gather(
            *(session.get(base_url + "/health") for _ in range(min(connections, 16)))
        )
        tasks: set[asyncio.Task[None]] = set()
        start_wall = time.time() + 0.05
        start_mono = time.monotonic() + 0.05
        sent = 0
        while sent < total:
            now = time.monotonic()
            while sent < total and start_mono + sent / rate <= now:
                task = asyncio.create_task(one(sent, start_wall + sent / rate))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(max(0.0, min(0.001, start_mono + sent / rate - now)))
        if tasks:
            await asyncio.wait(tasks)
    return records


async def fetch_status(
    base_url: str, ids: list[str], *, concurrency: int = 16
) -> dict[str, dict[str, Any]]:
    """GET /ingest/{id}/status for each id (after the run, not under load)."""
    import aiohttp

    found: dict[str, dict[str, Any]] = {}
    queue = list(ids)
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            while queue:
                event_id = queue.pop()
                async with session.get(f"{base_url}/ingest/{event_id}/status") as response:
                    if response.status == 200:
                        found[event_id] = await response.json()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return found
