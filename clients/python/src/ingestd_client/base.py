"""What Client and AsyncClient share: settings, emit(), counters, reading send() answers."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingestd_client.errors import EventRejected
from ingestd_client.outbox import DropCallback, DropReason, Outbox, Stats
from ingestd_client.policy import RETRYABLE_STATUS, Reply, RetryPolicy, parse_retry_after
from ingestd_client.spool import Spool
from ingestd_client.transport import Endpoint, base_headers

BATCH_PATH = "/ingest/batch"
SINGLE_PATH = "/ingest"


@dataclass(frozen=True)
class SendResult:
    """The server's answer to send(): accepted now, or a duplicate of an earlier event."""

    status: str
    """"accepted" or "duplicate"."""
    id: str
    """The stored event's id (for a duplicate, the original's)."""
    idempotency_key: str | None
    status_url: str | None
    body: dict[str, Any]
    """The whole answer."""

    @property
    def duplicate(self) -> bool:
        return self.status == "duplicate"


def read_send_reply(reply: Reply) -> SendResult | float | None:
    """A SendResult; or the seconds the server asked to wait (None: use backoff).

    Raises EventRejected when the server refused the event for good.
    """
    if reply.status in (200, 201, 202):
        doc = reply.json()
        body: dict[str, Any] = doc if isinstance(doc, dict) else {}
        status = str(body.get("status") or ("duplicate" if reply.status == 200 else "accepted"))
        event_id = body.get("original_id") if status == "duplicate" else None
        return SendResult(
            status=status,
            id=str(event_id or body.get("id") or body.get("event_id") or ""),
            idempotency_key=body.get("idempotency_key"),
            status_url=body.get("status_url"),
            body=body,
        )
    if reply.status in RETRYABLE_STATUS:
        return parse_retry_after(reply.headers.get("retry-after"))
    raise EventRejected(reply.status, reply.problem())


class BaseClient:
    """Settings and the emitting side; subclasses add a sender in `_init_sender`.

    `api_key` is sent as `Authorization: Bearer <api_key>`; a 401/403 answer is permanent:
    the events reach on_drop as `rejected: 401 <detail>` and are not retried.

    With a spool, an event that finds the queue full is written to the spool by emit()
    itself (tens of microseconds) instead of being dropped.
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        batch_size: int = 100,
        linger: float = 0.05,
        max_queue: int = 10_000,
        max_batch_bytes: int = 900 * 1024,
        retry: RetryPolicy | None = None,
        timeout: float = 10.0,
        on_drop: DropCallback | None = None,
        spool: str | Path | None = None,
        exit_timeout: float = 5.0,
    ) -> None:
        if not 1 <= batch_size <= 1000:
            raise ValueError("batch_size must be between 1 and 1000 (the server's limit)")
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.endpoint = Endpoint(url)
        self.headers = base_headers(api_key)
        self.timeout = timeout
        self.linger = linger
        self.exit_timeout = exit_timeout
        self.policy = retry or RetryPolicy()
        self._outbox = Outbox(
            max_queue=max_queue,
            batch_size=batch_size,
            max_batch_bytes=max_batch_bytes,
            policy=self.policy,
            on_drop=on_drop,
            spool=Spool(spool) if spool is not None else None,
        )
        self._queue = self._outbox.queue
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._closed = False
        self._wake: Callable[[], None] = lambda: None
        self._init_sender()

    def _init_sender(self) -> None:
        """Set up the sender side (subclasses)."""

    def emit(self, event: Mapping[str, Any]) -> None:
        """Queue an event and return at once; never raises, never waits on the network.

        The SDK gives it an `id` (UUIDv7) and `occurred_at` unless it has them, once, so
        every retry is idempotent. An event that cannot be sent reaches `on_drop` (or the
        spool): see DropReason.
        """
        try:
            queue = self._queue
            n = len(queue)
            if n >= self._max_queue or self._closed:
                self._outbox.overflow(
                    event, DropReason.CLOSED if self._closed else DropReason.QUEUE_FULL
                )
                return
            queue.append((dict(event), time.time()))
            if n == 0 or n + 1 >= self._batch_size:
                self._wake()
        except Exception as exc:  # a bad argument must not take the caller down
            self._outbox.unusable(event, exc)

    @property
    def stats(self) -> Stats:
        """Counters: sent, retried, dropped, spooled, and queued now."""
        return self._outbox.stats()

    @property
    def closed(self) -> bool:
        return self._closed
