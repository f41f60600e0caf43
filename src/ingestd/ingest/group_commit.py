"""Group commit: one committer per process turns everything waiting into one flush.

Callers submit a list of items and await its results. The committer takes every list
that is waiting, flushes them together, and resolves each caller's future. When idle it
flushes at once (no timer), and under load the groups grow by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from ingestd.errors import Overloaded

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Batches concurrent `submit` calls into calls of `flush`."""

    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        max_group: int = 5000,
        max_pending: int = 20_000,
    ) -> None:
        self._flush = flush
        self._max_group = max_group
        self._max_pending = max_pending
        self._queue: deque[tuple[list[T], asyncio.Future[list[R]]]] = deque()
        self._pending = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.groups = 0
        """How many flushes ran (a test and a metric: fewer than submits under load)."""

    @property
    def pending(self) -> int:
        return self._pending

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="group-commit")

    async def submit(self, items: list[T]) -> list[R]:
        """Queue items to be flushed together; raise Overloaded when too much is waiting."""
        if self._closing:
            raise Overloaded("ingestd is shutting down; retry against another instance")
        if self._pending and self._pending + len(items) > self._max_pending:
            raise Overloaded()
        future: asyncio.Future[list[R]] = asyncio.get_running_loop().create_future()
        self._queue.append((items, future))
        self._pending += len(items)
        self._wake.set()
        # No shield: a cancelled caller cancels only its own future, which the committer
        # skips; its items are committed all the same.
        return await future

    async def close(self) -> None:
        """Flush what is waiting, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    def _take(self) -> list[tuple[list[T], asyncio.Future[list[R]]]]:
        taken: list[tuple[list[T], asyncio.Future[list[R]]]] = []
        count = 0
        while self._queue and (not taken or count + len(self._queue[0][0]) <= self._max_group):
            entry = self._queue.popleft()
            taken.append(entry)
            count += len(entry[0])
        return taken

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            group = self._take()
            items = [item for entry, _ in group for item in entry]
            try:
                results = list(await self._flush(items))
            except Exception as exc:  # every caller of this group gets the failure
                for _, future in group:
                    if not future.done():
                        future.set_exception(exc)
            else:
                offset = 0
                for entry, future in group:
                    if not future.done():
                        future.set_result(results[offset : offset + len(entry)])
                    offset += len(entry)
            finally:
                self._pending -= len(items)
                self.groups += 1
                with contextlib.suppress(Exception):
                    await asyncio.sleep(0)
