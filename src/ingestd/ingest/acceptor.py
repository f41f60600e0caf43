"""Acceptance: route each submission, then group-commit it durably.

A request's submissions are committed together (a batch is atomic); concurrent requests
share one transaction. Only after the commit returns does the caller learn its outcome,
so an `accepted` outcome means the event is on disk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

from ingestd.ingest.group_commit import GroupCommit
from ingestd.model import AcceptOutcome, Submission
from ingestd.obs import metrics, tracing
from ingestd.routing import Directory, delivery_id
from ingestd.store.protocol import EventLog, Routed

log = logging.getLogger("ingestd.ingest.acceptor")


class Acceptor:
    """The one committer of a process."""

    def __init__(
        self,
        store: EventLog,
        directory: Directory,
        *,
        max_pending: int = 20_000,
        max_group: int = 5000,
        on_commit: Callable[[Sequence[Routed], Sequence[AcceptOutcome]], None] | None = None,
    ) -> None:
        self._store = store
        self._directory = directory
        self._on_commit = on_commit
        self._group: GroupCommit[Routed, AcceptOutcome] = GroupCommit(
            self._flush, max_group=max_group, max_pending=max_pending
        )

    @property
    def groups(self) -> int:
        return self._group.groups

    @property
    def pending(self) -> int:
        return self._group.pending

    def start(self) -> None:
        self._group.start()

    async def close(self) -> None:
        await self._group.close()

    async def accept(
        self, submissions: list[Submission], *, only: str | None = None
    ) -> list[AcceptOutcome]:
        """Durably accept these submissions together; outcomes in the same order. `only`
        routes them to that one destination whatever it subscribes to (a test event)."""
        routed = []
        for sub in submissions:
            names = [only] if only is not None else self._directory.subscribers(sub.event)
            routed.append(
                Routed(sub, tuple((name, delivery_id(sub.event, name)) for name in names))
            )
        return await self._group.submit(routed)

    async def _flush(self, batch: list[Routed]) -> list[AcceptOutcome]:
        span = None
        if tracing.tracer().enabled:
            span = tracing.commit_span([r.submission.event.trace for r in batch], len(batch))
        started = time.perf_counter()
        try:
            outcomes = await self._store.accept(batch, time.time())
        except Exception as exc:
            if span is not None:
                span.fail(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            if span is not None:
                span.end()
        metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
        metrics.GROUP_SIZE.observe(len(batch))
        metrics.DELIVERIES_ENQUEUED.inc(sum(len(o.delivery_ids) for o in outcomes))
        if self._on_commit is not None:
            try:  # the group is durable: a failing hook must not turn its 202s into errors
                self._on_commit(batch, outcomes)
            except Exception:
                log.exception("commit hook failed")
        return outcomes
