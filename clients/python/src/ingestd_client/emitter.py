"""Client: emit() from any thread; one background thread posts batches and retries them."""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from ingestd_client import envelope
from ingestd_client.base import BATCH_PATH, SINGLE_PATH, BaseClient, SendResult, read_send_reply
from ingestd_client.errors import ClientClosed, SendFailed
from ingestd_client.outbox import DropReason, Item, Job, log
from ingestd_client.policy import judge_batch, judge_error
from ingestd_client.transport import SyncTransport, TransportError


class Client(BaseClient):
    """A non-blocking event emitter for threaded code.

    `emit()` appends to a bounded queue; a daemon thread sends batches to /ingest/batch
    when `batch_size` events wait or the oldest has waited `linger` seconds. Failed
    attempts are retried with exponential backoff and full jitter, or after the server's
    Retry-After. `close()` (also run at exit, bounded by `exit_timeout`) sends what is
    left; what it cannot send goes to the spool or to `on_drop`.
    """

    def _init_sender(self) -> None:
        self._transport = SyncTransport(self.endpoint, self.headers, self.timeout)
        self._send_transport = SyncTransport(self.endpoint, self.headers, self.timeout)
        self._wake_event = threading.Event()
        self._wake = self._wake_event.set
        self._stop = threading.Event()
        self._idle = threading.Condition()
        self._inflight = 0
        self._flushes = 0
        self._deadline: float | None = None
        self._spool_due = 0.0
        self._spool_failures = 0
        self._thread = threading.Thread(target=self._run, name="ingestd-client", daemon=True)
        self._thread.start()
        self._at_exit = _exit_hook(weakref.ref(self))
        atexit.register(self._at_exit)

    # -- public --------------------------------------------------------------------------

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Send everything waiting now (spooled events too); False if `timeout` ran out."""
        with self._idle:
            self._flushes += 1
        self._wake_event.set()
        try:
            with self._idle:
                return self._idle.wait_for(self._settled, timeout)
        finally:
            with self._idle:
                self._flushes -= 1

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting events, send what is queued for up to `timeout` seconds, stop.

        Events still unsent at the deadline are spooled, or reported to on_drop("closed").
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._at_exit)
        self._deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake_event.set()
        self._thread.join(timeout + 1.0)
        if not self._thread.is_alive():
            self._outbox.drain(DropReason.CLOSED)  # an emit() that raced with close
            self._transport.close()
            if self._outbox.spool is not None:
                self._outbox.spool.close()
        self._send_transport.close()
        self._outbox.final_report()

    def send(self, event: Mapping[str, Any], timeout: float | None = None) -> SendResult:
        """POST one event to /ingest now and return the server's answer.

        Retries like the sender (same id, so idempotent) for up to `timeout` seconds if
        given. Raises EventRejected (4xx) or SendFailed (no success after every attempt).
        """
        if self._closed:
            raise ClientClosed()
        fields = dict(event)
        _, body = envelope.prepare(fields, time.time())
        deadline = None if timeout is None else time.monotonic() + timeout
        last = ""
        for attempt in range(1, self.policy.max_attempts + 1):
            left = None if deadline is None else deadline - time.monotonic()
            try:
                answer = read_send_reply(self._send_transport.post(SINGLE_PATH, body, left))
            except TransportError as exc:
                answer, last = None, str(exc)
            else:
                if isinstance(answer, SendResult):
                    return answer
                last = "the server asked to retry later"
            delay = self.policy.delay(attempt, answer)
            if attempt == self.policy.max_attempts or (
                deadline is not None and time.monotonic() + delay > deadline
            ):
                break
            time.sleep(delay)
        raise SendFailed(f"not accepted after {attempt} attempt(s): {last}")

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the sender thread ---------------------------------------------------------------

    def _settled(self) -> bool:
        return not (self._outbox.pending() or self._inflight or self._outbox.spool_rows)

    def _run(self) -> None:
        while True:
            try:
                items = self._collect()
                if items:
                    job = Job(self._outbox, items, max_attempts=self.policy.max_attempts)
                    self._deliver(job)
                if self._stop.is_set():
                    if not self._outbox.pending():
                        break
                elif self._spool_ready():
                    self._resend_spool()
            except Exception:  # keep sending whatever one batch did
                log.exception("ingestd client: sender error")
                self._stop.wait(self.policy.backoff_base)
            self._notify_idle()
        self._notify_idle()

    def _collect(self) -> list[Item]:
        """Wait for a batch to be due; [] when the spool or a stop needs attention."""
        outbox = self._outbox
        while True:
            n = outbox.pending()
            wait: float | None
            if n:
                wait = self.linger - (time.time() - outbox.oldest())
                if n >= self._batch_size or wait <= 0 or self._flushes or self._stop.is_set():
                    with self._idle:
                        items = outbox.take()
                        self._inflight = len(items)
                    return items
            else:
                if self._stop.is_set() or self._spool_ready():
                    return []
                self._notify_idle()
                wait = self._spool_wait()
            self._wake_event.clear()
            if outbox.pending() != n or self._stop.is_set():
                continue
            self._wake_event.wait(wait)

    def _deliver(self, job: Job) -> None:
        try:
            while (body := job.body()) is not None:
                left = None if self._deadline is None else self._deadline - time.monotonic()
                if left is not None and left <= 0:
                    job.give_up(DropReason.CLOSED)
                    break
                n = job.size
                try:
                    verdict = judge_batch(self._transport.post(BATCH_PATH, body, left), n)
                except TransportError as exc:
                    verdict = judge_error(n, str(exc))
                delay = job.record(verdict)
                if delay > 0 and not self._sleep(delay):
                    job.give_up(DropReason.CLOSED)
        finally:
            with self._idle:
                self._inflight = 0

    def _sleep(self, delay: float) -> bool:
        """Wait before a retry; False when closing and the deadline comes first."""
        until = time.monotonic() + delay
        while True:
            if self._deadline is not None and until > self._deadline:
                return False
            left = until - time.monotonic()
            if left <= 0:
                return True
            if self._stop.is_set():  # closing, and the retry still fits before the deadline
                time.sleep(left)
            else:
                self._stop.wait(left)

    def _spool_ready(self) -> bool:
        return bool(self._outbox.spool_rows) and time.monotonic() >= self._spool_due

    def _spool_wait(self) -> float | None:
        if not self._outbox.spool_rows:
            return None
        return max(0.0, self._spool_due - time.monotonic())

    def _resend_spool(self) -> None:
        items = self._outbox.from_spool()
        if not items:
            return
        with self._idle:
            self._inflight = len(items)
        job = Job(self._outbox, items, max_attempts=1)
        self._deliver(job)
        if job.last_error:
            self._spool_failures += 1
            pause = max(self.policy.backoff_base, self.policy.backoff(self._spool_failures))
            self._spool_due = time.monotonic() + pause
        else:
            self._spool_failures = 0

    def _notify_idle(self) -> None:
        with self._idle:
            self._idle.notify_all()


def _exit_hook(ref: weakref.ref[Client]) -> Callable[[], None]:
    def close_at_exit() -> None:
        client = ref()
        if client is not None:
            client.close(client.exit_timeout)

    return close_at_exit
