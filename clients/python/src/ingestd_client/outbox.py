"""The state both clients share: the bounded queue, counters, and where lost events go.

No I/O on the emitting side: `emit` appends to a deque. The sender side takes batches,
settles each event from a Verdict, and hands what it cannot deliver to the spool or to
`on_drop` — an event leaves the outbox sent, spooled or reported, never silently.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from ingestd_client import envelope
from ingestd_client.policy import Fate, RetryPolicy, Verdict
from ingestd_client.spool import Spool

log = logging.getLogger("ingestd_client")

DropCallback = Callable[[dict[str, Any], str], None]
"""on_drop(event, reason): reason is a DropReason, then ": detail" when there is one."""


class DropReason(enum.StrEnum):
    """Why an event was given up; `on_drop` reasons start with one of these."""

    QUEUE_FULL = "queue_full"
    """emit() found the in-memory queue full."""
    REJECTED = "rejected"
    """The server refused the event (its problem detail follows); it is never retried."""
    EXHAUSTED = "attempts_exhausted"
    """Every attempt failed (no answer, 429, 5xx); the last error follows."""
    CLOSED = "closed"
    """The client closed, or the process exited, before the event could be sent."""
    UNSERIALIZABLE = "unserializable"
    """The event cannot be encoded as JSON."""


SPOOLABLE = frozenset({DropReason.QUEUE_FULL, DropReason.EXHAUSTED, DropReason.CLOSED})
"""Reasons after which a later attempt may succeed, so a configured spool keeps the event."""


@dataclass(frozen=True)
class Stats:
    """The client's counters since it was created."""

    sent: int
    """Events the server accepted (duplicates of earlier attempts included)."""
    retried: int
    """Event attempts after the first (one event retried three times counts three)."""
    dropped: int
    """Events handed to on_drop."""
    spooled: int
    """Events written to the on-disk spool."""
    queued: int
    """Events waiting in memory now."""


class Item:
    """One event on the sender side, with the id and bytes fixed for every attempt."""

    __slots__ = ("body", "event", "id", "seq")

    def __init__(self, event: dict[str, Any], event_id: str, body: bytes, seq: int | None):
        self.event = event
        self.id = event_id
        self.body = body
        self.seq = seq
        """The spool row it came from, if any."""


class Outbox:
    """Queue, counters and the routes out of the client for lost events."""

    def __init__(
        self,
        *,
        max_queue: int,
        batch_size: int,
        max_batch_bytes: int,
        policy: RetryPolicy,
        on_drop: DropCallback | None,
        spool: Spool | None,
    ) -> None:
        self.queue: deque[tuple[Mapping[str, Any], float]] = deque()
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self.policy = policy
        self.spool = spool
        self.spool_rows = len(spool) if spool is not None else 0
        self._on_drop = on_drop if on_drop is not None else self._log_drop
        self._carry: Item | None = None
        self._lock = threading.Lock()
        self.sent = self.retried = self.dropped = self.spooled = 0
        self._unreported: dict[str, int] = {}
        self._reported_at = 0.0

    # -- emitting side -------------------------------------------------------------------

    def overflow(self, event: Mapping[str, Any], reason: DropReason) -> None:
        """An event that cannot enter the queue: spool it now, or report it."""
        if self.spool is None or reason not in SPOOLABLE:
            # Reported at once: stamped with its id, not encoded (emit() stays cheap when
            # a full queue turns every call into a drop).
            fields = dict(event)
            envelope.stamp(fields, time.time())
            self._report([fields], reason)
            return
        try:
            fields = dict(event)
            event_id, body = envelope.prepare(fields, time.time())
        except (TypeError, ValueError, OverflowError) as exc:
            self.unusable(event, exc)
            return
        self.give_up([Item(fields, event_id, body, None)], reason)

    def unusable(self, event: Any, exc: Exception) -> None:
        """An argument to emit() that is not a JSON object."""
        shown = dict(event) if isinstance(event, Mapping) else {"repr": repr(event)[:200]}
        self._report([shown], f"{DropReason.UNSERIALIZABLE}: {exc}")

    # -- sender side ---------------------------------------------------------------------

    def pending(self) -> int:
        return len(self.queue) + (self._carry is not None)

    def oldest(self) -> float:
        """When the oldest waiting event was emitted (time.time())."""
        if self._carry is not None:
            return 0.0
        return self.queue[0][1] if self.queue else time.time()

    def take(self) -> list[Item]:
        """The next batch: up to batch_size events and max_batch_bytes of JSON."""
        items: list[Item] = []
        size = 0
        queue = self.queue
        while len(items) < self.batch_size:
            item = self._carry
            self._carry = None
            if item is None:
                try:
                    event, emitted_at = queue.popleft()
                except IndexError:
                    break
                fields = event if isinstance(event, dict) else dict(event)
                try:
                    event_id, body = envelope.prepare(fields, emitted_at)
                except (TypeError, ValueError, OverflowError) as exc:
                    self.unusable(fields, exc)
                    continue
                item = Item(fields, event_id, body, None)
            if items and size + len(item.body) + 1 > self.max_batch_bytes:
                self._carry = item
                break
            items.append(item)
            size += len(item.body) + 1
        return items

    def settle(self, items: list[Item], verdict: Verdict) -> tuple[list[Item], list[Item]]:
        """Count what was sent, report what was refused; return (to retry, too large)."""
        retry: list[Item] = []
        too_large: list[Item] = []
        done: list[int] = []
        for item, fate, reason in zip(items, verdict.fates, verdict.reasons, strict=True):
            if fate is Fate.SENT:
                self.sent += 1
                if item.seq is not None:
                    done.append(item.seq)
            elif fate is Fate.REJECTED:
                self.reject([item], reason)
            elif fate is Fate.TOO_LARGE:
                too_large.append(item)
            else:
                retry.append(item)
        self._unspool(done)
        return retry, too_large

    def reject(self, items: list[Item], reason: str) -> None:
        """The server refused these for good: report them (a spool would not help)."""
        self._unspool([i.seq for i in items if i.seq is not None])
        self._report([i.event for i in items], f"{DropReason.REJECTED}: {reason}")

    def give_up(self, items: list[Item], reason: str) -> None:
        """Delivery stops here for now: spool the events if a spool is set, else report."""
        fresh = [i for i in items if i.seq is None]  # spooled rows simply stay on disk
        if not fresh:
            return
        if self.spool is not None and reason.split(":", 1)[0] in SPOOLABLE:
            try:
                self.spool.put([(i.id, i.body) for i in fresh], reason)
            except Exception as exc:  # disk full, file removed: report rather than lose
                log.warning("ingestd client: cannot write the spool: %s", exc)
            else:
                with self._lock:
                    self.spooled += len(fresh)
                    self.spool_rows += len(fresh)
                return
        self._report([i.event for i in fresh], reason)

    def from_spool(self) -> list[Item]:
        """The oldest spooled events, to resend once each."""
        if self.spool is None:
            return []
        rows = self.spool.take(self.batch_size, self.max_batch_bytes)
        if not rows:
            with self._lock:
                self.spool_rows = 0
        return [Item(_decode(r.body), r.event_id, r.body, r.seq) for r in rows]

    def _unspool(self, seqs: list[int]) -> None:
        if seqs and self.spool is not None:
            self.spool.delete(seqs)
            with self._lock:
                self.spool_rows = max(0, self.spool_rows - len(seqs))

    def drain(self, reason: str) -> None:
        """Give up everything still queued (at close, or at exit)."""
        while self.pending():
            items = self.take()
            if items:
                self.give_up(items, reason)

    # -- reporting -----------------------------------------------------------------------

    def _report(self, events: list[dict[str, Any]], reason: str) -> None:
        with self._lock:
            self.dropped += len(events)
        for event in events:
            try:
                self._on_drop(event, reason)
            except Exception:
                log.exception("ingestd client: on_drop raised")

    def _log_drop(self, event: dict[str, Any], reason: str) -> None:
        """The default on_drop: a warning at most once a second, with counts by reason."""
        code = reason.split(":", 1)[0]
        with self._lock:
            self._unreported[code] = self._unreported.get(code, 0) + 1
            now = time.monotonic()
            if now - self._reported_at < 1.0:
                return
            self._reported_at = now
            counts, self._unreported = self._unreported, {}
            total = self.dropped
        summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        log.warning(
            "ingestd client dropped %d event(s) (%s), %d in all; last: %s",
            sum(counts.values()),
            summary,
            total,
            reason,
        )

    def final_report(self) -> None:
        """Log drops that the once-a-second limit held back."""
        with self._lock:
            counts, self._unreported = self._unreported, {}
            total = self.dropped
        if counts:
            summary = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
            log.warning("ingestd client dropped %s; %d in all", summary, total)

    def stats(self) -> Stats:
        return Stats(self.sent, self.retried, self.dropped, self.spooled, self.pending())


def _decode(body: bytes) -> dict[str, Any]:
    try:
        event = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return {}
    return event if isinstance(event, dict) else {}


class Job:
    """Sending one batch until each event is sent, refused, or given up (no I/O here).

    The caller loops: `body()` → POST it → `record(verdict)` → wait the returned delay.
    A 413 splits the batch in halves; a lone event that is too large is refused.
    """

    def __init__(self, outbox: Outbox, items: list[Item], *, max_attempts: int) -> None:
        self.outbox = outbox
        self.chunks: deque[list[Item]] = deque([items] if items else [])
        self.max_attempts = max_attempts
        self.attempt = 1
        self.last_error = ""

    def body(self) -> bytes | None:
        """The next request body, or None when the job is over."""
        if not self.chunks:
            return None
        return envelope.batch_body([i.body for i in self.chunks[0]])

    @property
    def size(self) -> int:
        return len(self.chunks[0]) if self.chunks else 0

    def record(self, verdict: Verdict) -> float:
        """Settle the last request; the seconds to wait before the next one."""
        outbox = self.outbox
        chunk = self.chunks.popleft()
        retry, too_large = outbox.settle(chunk, verdict)
        if too_large:
            if len(too_large) == 1:
                outbox.reject(too_large, next(r for r in verdict.reasons if r))
            else:
                half = len(too_large) // 2
                self.chunks.extendleft([too_large[half:], too_large[:half]])
        if not retry:
            return 0.0
        self.last_error = next((r for r in verdict.reasons if r), "")
        if self.attempt >= self.max_attempts:
            outbox.give_up(retry, f"{DropReason.EXHAUSTED}: {self.last_error}")
            return 0.0
        self.chunks.appendleft(retry)
        outbox.retried += len(retry)
        self.attempt += 1
        return outbox.policy.delay(self.attempt - 1, verdict.retry_after)

    def give_up(self, reason: DropReason) -> None:
        """Stop: everything not yet settled is spooled or reported."""
        detail = f"{reason}: {self.last_error}" if self.last_error else str(reason)
        while self.chunks:
            self.outbox.give_up(self.chunks.popleft(), detail)
