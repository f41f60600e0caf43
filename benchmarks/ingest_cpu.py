"""CPU per accepted event on the ingest fast path, in process: no HTTP server, no load generator.

The ASGI app is called directly by `--concurrency` coroutines posting single events to
`/ingest` (real SQLite store, group commit, synchronous=FULL), and the process CPU time
(the SQLite writer thread included) is divided by the requests answered. Less sensitive
to a shared machine than `ingestd bench`, so small differences between two builds show:
run it alternately with PYTHONPATH pointing at each build's `src`.

    python -m benchmarks.ingest_cpu --requests 20000 [--traceparent] [--otel-sampler off]
    python -m benchmarks.ingest_cpu --shape wrk [--batch 100]   # the wrk event, a unique id each

`--shape wrk` posts benchmarks/wrk/ingest.lua's ~300-byte page view with a unique id (the
`source:id` key path), to `/ingest`, or to `/ingest/batch` in groups of `--batch`; the
figure is then CPU per event.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import ingestd
from ingestd.api.app import IngestdApp
from ingestd.config import Settings

TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
BODY = b'{"source":"bench","type":"order.paid","data":{"total":42,"note":"cpu"}}'
WRK_EVENT = (
    '{"source":"bench","type":"page.viewed","id":"%s","actor_id":"user-48213",'
    '"data":{"url":"https://shop.example.com/products/12345?ref=spring",'
    '"referrer":"https://www.google.com/","session":"s-8f14e45fceea167a5a36dedd4bea2543",'
    '"ua":"Mozilla/5.0 (X11; Linux x86_64)","w":1920,"h":1080}}'
)


def bodies(shape: str, batch: int) -> Iterator[bytes]:
    """Request bodies: the fixed one, or wrk's event with a fresh id each time."""
    if shape == "fixed":
        yield from itertools.repeat(BODY)
    counter = itertools.count()
    while True:
        events = [WRK_EVENT % f"cpu-{next(counter)}" for _ in range(max(batch, 1))]
        yield (events[0] if batch == 0 else '{"events":[' + ",".join(events) + "]}").encode()


async def run(
    requests: int, concurrency: int, traceparent: bool, shape: str = "fixed", batch: int = 0
) -> dict[str, Any]:
    path = "/ingest/batch" if batch else "/ingest"
    per_request = max(batch, 1)
    source = bodies(shape, batch)
    with tempfile.TemporaryDirectory() as tmp:
        app = IngestdApp(Settings(database_url=f"sqlite:///{tmp}/bench.db"), "api")
        await app.runtime.start()
        statuses: dict[int, int] = {}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1

        async def client(count: int) -> None:
            for _ in range(count):
                body = next(source)
                headers = [
                    (b"host", b"bench"),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ]
                if traceparent:
                    headers.append((b"traceparent", TRACEPARENT))
                message = {"type": "http.request", "body": body, "more_body": False}

                async def receive(message: dict[str, Any] = message) -> dict[str, Any]:
                    return message

                scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
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
        "shape": shape,
        "batch": batch,
        "cpu_us_per_request": round(cpu / done * 1e6, 1),
        "cpu_us_per_event": round(cpu / (done * per_request) * 1e6, 2),
        "requests_per_cpu_second": round(done / cpu),
        "wall_rps": round(done / wall),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--traceparent", action="store_true", help="send a W3C traceparent")
    p.add_argument("--shape", choices=("fixed", "wrk"), default="fixed", help="the body")
    p.add_argument("--batch", type=int, default=0, help="events per /ingest/batch request")
    args = p.parse_args()
    if args.batch and args.shape != "wrk":
        p.error("--batch needs --shape wrk")
    job = run(args.requests, args.concurrency, args.traceparent, args.shape, args.batch)
    try:
        import uvloop

        result = uvloop.run(job)
    except ImportError:
        result = asyncio.run(job)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
