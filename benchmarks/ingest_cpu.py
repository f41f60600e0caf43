"""CPU per accepted event on the ingest fast path, in process: no HTTP server, no load generator.

The ASGI app is called directly by `--concurrency` coroutines posting single events to
`/ingest` (real SQLite store, group commit, synchronous=FULL), and the process CPU time
(the SQLite writer thread included) is divided by the requests answered. Less sensitive
to a shared machine than `ingestd bench`, so small differences between two builds show:
run it alternately with PYTHONPATH pointing at each build's `src`.

    python -m benchmarks.ingest_cpu --requests 20000 [--traceparent] [--otel-sampler off]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from typing import Any

import ingestd
from ingestd.api.app import IngestdApp
from ingestd.config import Settings

TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
BODY = b'{"source":"bench","type":"order.paid","data":{"total":42,"note":"cpu"}}'


async def run(requests: int, concurrency: int, traceparent: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        app = IngestdApp(Settings(database_url=f"sqlite:///{tmp}/bench.db"), "api")
        await app.runtime.start()
        headers = [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ]
        if traceparent:
            headers.append((b"traceparent", TRACEPARENT))
        statuses: dict[int, int] = {}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": BODY, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1

        async def client(count: int) -> None:
            for _ in range(count):
                scope = {"type": "http", "method": "POST", "path": "/ingest", "headers": headers}
                await app(scope, receive, send)  # type: ignore[arg-type]

        await asyncio.gather(*(client(20) for _ in range(concurrency)))  # warm up
        statuses.clear()
        each = requests // concurrency
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(client(each) for _ in range(concurrency)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        await app.runtime.stop()
    done = sum(statuses.values())
    return {
        "build": ingestd.__file__,
        "requests": done,
        "statuses": statuses,
        "traceparent": traceparent,
        "cpu_us_per_request": round(cpu / done * 1e6, 1),
        "requests_per_cpu_second": round(done / cpu),
        "wall_rps": round(done / wall),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--traceparent", action="store_true", help="send a W3C traceparent")
    args = p.parse_args()
    try:
        import uvloop

        result = uvloop.run(run(args.requests, args.concurrency, args.traceparent))
    except ImportError:
        result = asyncio.run(run(args.requests, args.concurrency, args.traceparent))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
