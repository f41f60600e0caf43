"""The Python peers' ingest endpoint: FastAPI reads the JSON body and enqueues it, then 202.

    python python_enqueue.py saq|celery|procrastinate PORT URL QUEUE

saq: Queue.enqueue (Redis, in memory); celery: task.delay (Redis broker); procrastinate:
task.defer_async (one INSERT in PostgreSQL, committed). Served by uvicorn with uvloop and
httptools, as ingestd is. Prints "READY PORT" once listening.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import uvicorn
from fastapi import FastAPI, Request

kind, port, url, queue_name = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def build() -> Any:
    if kind == "saq":
        from saq import Queue

        queue = Queue.from_url(url, name=queue_name)

        async def enqueue(body: Any) -> str:
            job = await queue.enqueue("event", body=body)
            return str(job.key if job else "")

        return enqueue, queue.connect, queue.disconnect
    if kind == "celery":
        from celery import Celery

        app = Celery("peer", broker=url)

        @app.task(name="event")
        def event(body: Any) -> None:  # never run here: the bench drains nothing
            pass

        async def enqueue(body: Any) -> str:
            # delay() is synchronous (kombu): this is how a FastAPI app calls it
            return str(event.delay(body).id)

        async def nothing() -> None:
            pass

        return enqueue, nothing, nothing
    if kind == "procrastinate":
        import procrastinate

        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

        @app.task(name="event", queue=queue_name)
        async def event(body: Any) -> None:
            pass

        opened = contextlib.AsyncExitStack()

        async def start() -> None:
            await opened.enter_async_context(app.open_async())
            await app.schema_manager.apply_schema_async()  # a fresh database per run

        async def enqueue(body: Any) -> str:
            return str(await event.defer_async(body=body))

        return enqueue, start, opened.aclose
    raise SystemExit(f"unknown kind {kind}")


enqueue, start, stop = build()


@contextlib.asynccontextmanager
async def lifespan(_: FastAPI) -> Any:
    await start()
    print(f"READY {port}", flush=True)
    yield
    await stop()


api = FastAPI(lifespan=lifespan)


@api.post("/ingest", status_code=202)
async def ingest(request: Request) -> dict[str, str]:
    return {"status": "accepted", "id": await enqueue(await request.json())}


if __name__ == "__main__":
    uvicorn.run(
        api,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )
