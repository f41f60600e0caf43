"""AsyncClient: the same emitter for asyncio; one task posts batches over asyncio streams."""

from __future__ import annotations

import asyncio
import atexit
import time
import weakref
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from ingestd_client import envelope
from ingestd_client.aio_transport import AsyncTransport
from ingestd_client.base import BATCH_PATH, SINGLE_PATH, BaseClient, SendResult, read_send_reply
from ingestd_client.errors import ClientClosed, SendFailed
from ingestd_client.outbox import DropReason, Item, Job, log
from ingestd_client.policy import judge_batch, judge_error
from ingestd_client.transport import TransportError


class AsyncClient(BaseClient):
    """A non-blocking event emitter for asyncio code.

    Call `emit()` from the event loop's thread (use Client from other threads); the
    sender task starts with the first emit() inside a running loop, or on `async with`.
    Close it with `await aclose()`: at interpreter exit an unclosed AsyncClient can no
    longer send, so what it still holds goes to the spool or to on_drop("closed").
    """

    def _init_sender(self) -> None:
        self._transport = AsyncTransport(self.endpoint, self.headers, self.timeout)
        self._wake_event = asyncio.Event()
        self._wake = self._on_emit
        self._stop = asyncio.Event()
        self._idle = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._inflight = 0
        self._flushes = 0
        self._deadline: float | None = None
        self._spool_due = 0.0
        self._spool_failures = 0
        self._at_exit = _exit_hook(weakref.ref(self))
        atexit.register(self._at_exit)

    # -- public --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the sender task in the running loop (emit() does it when needed)."""
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ingestd-client")

    async def flush(self, timeout: float | None = 30.0) -> bool:
        """Send everything waiting now (spooled events too); False if `timeout` ran out."""
        self.start()
        self._flushes += 1
        self._wake_event.set()
        try:
            async with asyncio.timeout(timeout), self._idle:
                await self._idle.wait_for(self._settled)
            return True
        except TimeoutError:
            return False
        finally:
            self._flushes -= 1

    async def aclose(self, timeout: float = 5.0) -> None:
        """Stop accepting events, send what is queued for up to `timeout` seconds, stop."""
        if self._closed:
            return
        self.start()
        self._closed = True
        atexit.unregister(self._at_exit)
        self._deadline = time.monotonic() + timeout
        self._stop.set()
        self._wake_event.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout + 1.0)
            except TimeoutError:
                self._task.cancel()
        self._outbox.drain(DropReason.CLOSED)
        await self._transport.close()
        if self._outbox.spool is not None:
            self._outbox.spool.close()
        self._outbox.final_report()

    async def send(self, event: Mapping[str, Any], timeout: float | None = None) -> SendResult:
        """POST one event to /ingest now and return the server's answer (see Client.send)."""
        if self._closed:
            raise ClientClosed()
        fields = dict(event)
        _, body = envelope.prepare(fields, time.time())
        deadline = None if timeout is None else time.monotonic() + timeout
        last = ""
        attempt = 0
        while attempt < self.policy.max_attempts:
            attempt += 1
            left = None if deadline is None else deadline - time.monotonic()
            try:
                answer = read_send_reply(await self._transport.post(SINGLE_PATH, body, left))
            except TransportError as exc:
                answer, last = None, str(exc)
            else:
                if isinstance(answer, SendResult):
                    return answer
                last = "the server asked to retry later"
            delay = self.policy.delay(attempt, answer)
            if deadline is not None and time.monotonic() + delay > deadline:
                break
            if attempt < self.policy.max_attempts:
                await asyncio.sleep(delay)
        raise SendFailed(f"not accepted after {attempt} attempt(s): {last}")

    async def __aenter__(self) -> AsyncClient:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the sender task -----------------------------------------------------------------

    def _on_emit(self) -> None:
        if self._task is None:
            try:
                self.start()
            except RuntimeError:  # no running loop yet: the event waits for one
                return
        self._wake_event.set()

    def _settled(self) -> bool:
        return not (self._outbox.pending() or self._inflight or self._outbox.spool_rows)

    async def _run(self) -> None:
        while True:
            try:
                items = await self._collect()
                if items:
                    job = Job(self._outbox, items, max_attempts=self.policy.max_attempts)
                    await self._deliver(job)
                if self._stop.is_set():
                    if not self._outbox.pending():
                        break
                elif self._spool_ready():
                    await self._resend_spool()
            except Exception:  # keep sending whatever one batch did
                log.exception("ingestd client: sender error")
                await asyncio.sleep(self.policy.backoff_base)
            await self._notify_idle()
        await self._notify_idle()

    async def _collect(self) -> list[Item]:
        outbox = self._outbox
        while True:
            n = outbox.pending()
            wait: float | None
            if n:
                wait = self.linger - (time.time() - outbox.oldest())
                if n >= self._batch_size or wait <= 0 or self._flushes or self._stop.is_set():
                    items = outbox.take()
                    self._inflight = len(items)
                    return items
            else:
                if self._stop.is_set() or self._spool_ready():
                    return []
                await self._notify_idle()
                wait = self._spool_wait()
            self._wake_event.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._wake_event.wait()
            except TimeoutError:
                pass

    async def _deliver(self, job: Job) -> None:
        try:
            while (body := job.body()) is not None:
                left = None if self._deadline is None else self._deadline - time.monotonic()
                if left is not None and left <= 0:
                    job.give_up(DropReason.CLOSED)
                    break
                n = job.size
                try:
                    reply = await self._transport.post(BATCH_PATH, body, left)
                    verdict = judge_batch(reply, n)
                except TransportError as exc:
                    verdict = judge_error(n, str(exc))
                delay = job.record(verdict)
                if delay > 0 and not await self._sleep(delay):
                    job.give_up(DropReason.CLOSED)
        finally:
            self._inflight = 0

    async def _sleep(self, delay: float) -> bool:
        until = time.monotonic() + delay
        while True:
            if self._deadline is not None and until > self._deadline:
                return False
            left = until - time.monotonic()
            if left <= 0:
                return True
            if self._stop.is_set():
                await asyncio.sleep(left)
                continue
            try:
                async with asyncio.timeout(left):
                    await self._stop.wait()
            except TimeoutError:
                pass

    def _spool_ready(self) -> bool:
        return bool(self._outbox.spool_rows) and time.monotonic() >= self._spool_due

    def _spool_wait(self) -> float | None:
        if not self._outbox.spool_rows:
            return None
        return max(0.0, self._spool_due - time.monotonic())

    async def _resend_spool(self) -> None:
        items = self._outbox.from_spool()
        if not items:
            return
        self._inflight = len(items)
        job = Job(self._outbox, items, max_attempts=1)
        await self._deliver(job)
        if job.last_error:
            self._spool_failures += 1
            pause = max(self.policy.backoff_base, self.policy.backoff(self._spool_failures))
            self._spool_due = time.monotonic() + pause
        else:
            self._spool_failures = 0

    async def _notify_idle(self) -> None:
        async with self._idle:
            self._idle.notify_all()


def _exit_hook(ref: weakref.ref[AsyncClient]) -> Callable[[], None]:
    def drain_at_exit() -> None:
        client = ref()
        if client is not None and not client.closed:
            client._closed = True
            client._outbox.drain(DropReason.CLOSED)
            client._outbox.final_report()

    return drain_at_exit
