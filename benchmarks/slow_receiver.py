"""A loopback stand-in for a slow ingestd: answers POST /ingest/batch after --delay s.

    python -m benchmarks.slow_receiver --port 8123 --delay 0.2

It speaks the batch contract the SDKs read (207, one `accepted` result per event), so a
client sees a healthy but slow server. Run as its own process so it takes no CPU or GIL
from the process being measured. Prints "READY <port>" when listening.
"""

from __future__ import annotations

import argparse
import asyncio
import json

from aiohttp import web


def make_app(delay: float) -> web.Application:
    async def batch(request: web.Request) -> web.Response:
        doc = await request.json()
        await asyncio.sleep(delay)
        events = doc.get("events", [])
        results = [
            {"status": "accepted", "id": e.get("id"), "event_id": e.get("id")} for e in events
        ]
        body = {"results": results, "accepted": len(events), "duplicate": 0, "rejected": 0}
        return web.Response(status=207, text=json.dumps(body), content_type="application/json")

    async def single(request: web.Request) -> web.Response:
        doc = await request.json()
        await asyncio.sleep(delay)
        body = {"id": doc.get("id"), "event_id": doc.get("id"), "status": "accepted"}
        return web.Response(status=202, text=json.dumps(body), content_type="application/json")

    app = web.Application(client_max_size=4 * 2**20)
    app.router.add_post("/ingest/batch", batch)
    app.router.add_post("/ingest", single)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.2)
    args = parser.parse_args()
    print(f"READY {args.port}", flush=True)
    web.run_app(make_app(args.delay), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
