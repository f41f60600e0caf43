"""The Python SDK: emit() events without blocking; batching, retries and a spool behind it.

    from ingestd_client import Client

    client = Client("http://127.0.0.1:8000", api_key=None)
    client.emit({"source": "billing", "type": "invoice.paid", "data": {"id": 42}})
    client.flush(timeout=5)        # optional; close() and interpreter exit also flush

`AsyncClient` is the same for asyncio; `send()` on either posts one event and returns
the server's answer.
"""

from ingestd_client._version import __version__
from ingestd_client.aio import AsyncClient
from ingestd_client.base import SendResult
from ingestd_client.emitter import Client
from ingestd_client.envelope import new_event_id
from ingestd_client.errors import ClientClosed, ClientError, EventRejected, SendFailed
from ingestd_client.outbox import DropCallback, DropReason, Stats
from ingestd_client.policy import RetryPolicy

__all__ = [
    "AsyncClient",
    "Client",
    "ClientClosed",
    "ClientError",
    "DropCallback",
    "DropReason",
    "EventRejected",
    "RetryPolicy",
    "SendFailed",
    "SendResult",
    "Stats",
    "__version__",
    "new_event_id",
]
