"""An order service that records events in ingestd without waiting for it.

The seed services' own situation: a request handler used to write to the database and
call SendGrid before answering. Here it emits `order.created` to ingestd through the
Python SDK (`ingestd-client`): `emit()` puts the event on an in-memory queue and returns
at once; a background task sends batches, retries with backoff and honours Retry-After.
The handler never waits on ingestd, and never fails because ingestd is slow or down.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel, Field

from ingestd_client import AsyncClient

INGESTD_URL = os.environ.get("INGESTD_URL", "http://127.0.0.1:8000")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One client per process, opened with the app and closed with it: close() sends what
    # is still queued (within its timeout) before the process exits.
    async with AsyncClient(INGESTD_URL, api_key=os.environ.get("INGESTD_API_KEY")) as client:
        app.state.events = client
        yield


app = FastAPI(title="orders", lifespan=lifespan)


class OrderIn(BaseModel):
    sku: str = Field(min_length=1)
    quantity: int = Field(ge=1)
    email: str


@app.post("/orders", status_code=201)
async def create_order(order: OrderIn) -> dict[str, str]:
    order_id = f"ord-{uuid.uuid4().hex[:12]}"
    # ... store the order in the application's own database here ...
    app.state.events.emit(
        {
            "source": "orders",
            "type": "order.created",
            "id": order_id,  # the idempotency key becomes orders:<id>: retries never duplicate
            "subject": order.email,
            "data": {"sku": order.sku, "quantity": order.quantity, "email": order.email},
        }
    )  # returns at once; never raises
    return {"id": order_id}


@app.get("/health")
async def health() -> dict[str, object]:
    stats = app.state.events.stats
    return {"status": "ok", "events": {"sent": stats.sent, "queued": stats.queued}}
