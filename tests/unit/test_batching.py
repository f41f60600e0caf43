"""Group commit: concurrent submits share flushes; failures and overload reach every caller."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from ingestd.errors import Overloaded
from ingestd.ingest.group_commit import GroupCommit


class Flusher:
    """A flush function whose calls can be held open, recording what each call got."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        self.fail: Exception | None = None

    async def __call__(self, items: list[int]) -> list[int]:
        self.calls.append(list(items))
        self.entered.set()
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return [i * 10 for i in items]


@pytest.fixture
async def flusher() -> Flusher:
    return Flusher()


@pytest.fixture
async def group(flusher: Flusher) -> AsyncIterator[GroupCommit[int, int]]:
    g: GroupCommit[int, int] = GroupCommit(flusher, max_group=1000, max_pending=100)
    g.start()
    yield g
    flusher.gate.set()
    await g.close()


async def test_a_lone_submit_is_flushed_at_once(
    group: GroupCommit[int, int], flusher: Flusher
) -> None:
    assert await group.submit([1, 2]) == [10, 20]
    assert flusher.calls == [[1, 2]]
    assert group.groups == 1
    assert group.pending == 0


async def test_concurrent_submits_share_flushes(
    group: GroupCommit[int, int], flusher: Flusher
) -> None:
    flusher.gate.clear()
    first = asyncio.create_task(group.submit([0]))
    await flusher.entered.wait()  # the committer is busy with the first flush
    others = [asyncio.create_task(group.submit([i])) for i in range(1, 51)]
    await asyncio.sleep(0)
    flusher.gate.set()
    results = await asyncio.gather(first, *others)
    assert results == [[i * 10] for i in range(51)]
    assert group.groups < 51
    assert len(flusher.calls) == group.groups == 2
    assert flusher.calls[1] == list(range(1, 51))  # in submission order


async def test_each_caller_gets_its_own_slice(
    group: GroupCommit[int, int], flusher: Flusher
) -> None:
    flusher.gate.clear()
    blocker = asyncio.create_task(group.submit([99]))
    await flusher.entered.wait()
    tasks = [asyncio.create_task(group.submit(list(range(n)))) for n in (3, 0, 1, 5)]
    await asyncio.sleep(0)
    flusher.gate.set()
    assert await blocker == [990]
    assert [await t for t in tasks] == [[0, 10, 20], [], [0], [0, 10, 20, 30, 40]]


async def test_a_failed_flush_fails_every_caller_in_the_group(
    group: GroupCommit[int, int], flusher: Flusher
) -> None:
    flusher.gate.clear()
    blocker = asyncio.create_task(group.submit([0]))
    await flusher.entered.wait()
    members = [asyncio.create_task(group.submit([i])) for i in range(1, 6)]
    await asyncio.sleep(0)
    flusher.fail = RuntimeError("disk full")
    flusher.gate.set()
    for task in [blocker, *members]:
        with pytest.raises(RuntimeError, match="disk full"):
            await task
    assert len(flusher.calls) == 2
    assert group.pending == 0
    # The committer survives a failed flush.
    flusher.fail = None
    assert await group.submit([7]) == [70]


async def test_overloaded_when_too_much_is_waiting(
    group: GroupCommit[int, int], flusher: Flusher
) -> None:
    flusher.gate.clear()
    held = [asyncio.create_task(group.submit(list(range(50))))]
    await flusher.entered.wait()
    held.append(asyncio.create_task(group.submit(list(range(50)))))
    await asyncio.sleep(0)
    assert group.pending == 100
    with pytest.raises(Overloaded):
        await group.submit([1])
    flusher.gate.set()
    assert [len(await t) for t in held] == [50, 50]
    # Once drained, submits are accepted again.
    assert await group.submit([1]) == [10]


async def test_a_submit_larger_than_max_pending_is_taken_when_idle(
    group: GroupCommit[int, int],
) -> None:
    # Otherwise a single batch above the limit could never be accepted.
    assert len(await group.submit(list(range(150)))) == 150


async def test_groups_are_capped_at_max_group(flusher: Flusher) -> None:
    g: GroupCommit[int, int] = GroupCommit(flusher, max_group=10, max_pending=1000)
    g.start()
    flusher.gate.clear()
    blocker = asyncio.create_task(g.submit([0]))
    await flusher.entered.wait()
    tasks = [asyncio.create_task(g.submit([1, 2, 3])) for _ in range(10)]
    await asyncio.sleep(0)
    flusher.gate.set()
    await asyncio.gather(blocker, *tasks)
    await g.close()
    assert all(len(call) <= 10 for call in flusher.calls)
    assert sum(len(call) for call in flusher.calls) == 31
    # A request's items are never split between flushes.
    assert all(len(call) % 3 == 0 for call in flusher.calls[1:])


async def test_close_flushes_what_is_waiting_then_refuses(flusher: Flusher) -> None:
    g: GroupCommit[int, int] = GroupCommit(flusher)
    g.start()
    flusher.gate.clear()
    first = asyncio.create_task(g.submit([1]))
    await flusher.entered.wait()
    second = asyncio.create_task(g.submit([2]))
    await asyncio.sleep(0)
    closing = asyncio.create_task(g.close())
    await asyncio.sleep(0)
    flusher.gate.set()
    await closing
    assert await first == [10]
    assert await second == [20]
    with pytest.raises(Overloaded, match="shutting down"):
        await g.submit([3])


async def test_a_cancelled_caller_does_not_lose_the_commit(
    group: GroupCommit[int, int], flusher: Flusher
) -> None:
    # The flush still happens (the item is durable); only the caller stopped waiting.
    flusher.gate.clear()
    task = asyncio.create_task(group.submit([5]))
    await flusher.entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    flusher.gate.set()
    assert await group.submit([6]) == [60]
    assert flusher.calls == [[5], [6]]
