"""The worker claims its next jobs while the previous outcomes are still being committed."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ingestd.config import DestinationConfig
from ingestd.destinations.base import Attempt
from ingestd.errors import StoreUnavailable
from ingestd.ingest.envelope import parse_event
from ingestd.model import Job
from ingestd.obs import metrics
from ingestd.routing import Directory, delivery_id
from ingestd.store.protocol import JobResult, Routed
from ingestd.store.sqlite import SQLiteStore
from ingestd.worker.engine import Worker
from ingestd.worker.retry import RetryPolicy


class SlowFinishStore(SQLiteStore):
    """A real SQLite store whose outcome commits wait until the test opens a gate."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.gate = asyncio.Event()

    async def finish(self, worker_id: str, results: Sequence[JobResult], now: float) -> int:
        await self.gate.wait()
        return await super().finish(worker_id, results, now)


class Recorder:
    def __init__(self) -> None:
        self.delivered: list[str] = []

    async def deliver(self, job: Job) -> Attempt:
        self.delivered.append(job.event.id)
        return Attempt(ok=True)

    async def close(self) -> None:
        return None


def routed(event_id: str) -> Routed:
    sub = parse_event({"source": "s", "type": "t", "id": event_id, "data": {}})
    return Routed(sub, (("rec", delivery_id(sub.event, "rec")),))


def serving(destination: object) -> Directory:
    """A directory of one handler destination, `rec`, delivered to by `destination`."""
    directory = Directory(lambda config: destination)
    directory.load([DestinationConfig(name="rec", kind="handler")])
    return directory


async def drained(store: SQLiteStore, timeout: float) -> None:
    """Wait until no job is left to deliver: every outcome committed."""

    async def empty() -> None:
        while (await store.depth()).backlog:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(empty(), timeout=timeout)


async def test_attempts_go_on_while_outcomes_commit(tmp_path: object) -> None:
    store = SlowFinishStore(f"{tmp_path}/ingestd.db")
    await store.open()
    recorder = Recorder()
    directory = serving(recorder)
    policy = RetryPolicy.from_schedule([0, 5])
    worker = Worker(
        store, directory, lambda _name: policy, concurrency=2, batch=2, poll_interval=0.05
    )
    await store.accept([routed(f"e{i}") for i in range(6)], 1.0)
    worker.start()
    try:
        # With slots held until each outcome is committed, only the first two would run.
        async def all_attempted() -> None:
            while len(recorder.delivered) < 6:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(all_attempted(), timeout=10)
        assert sorted(recorder.delivered) == [f"e{i}" for i in range(6)]
        assert (await store.depth()).backlog > 0  # nothing committed yet: the gate is shut
        store.gate.set()
        await drained(store, timeout=10)
        assert sorted(recorder.delivered) == [f"e{i}" for i in range(6)]  # each once
    finally:
        store.gate.set()
        await worker.stop()
        await store.close()


class FlakyFinishStore(SQLiteStore):
    """A real SQLite store whose first outcome commits fail as an outage would."""

    def __init__(self, path: str, failures: int) -> None:
        super().__init__(path)
        self.failures = failures

    async def finish(self, worker_id: str, results: Sequence[JobResult], now: float) -> int:
        if self.failures > 0:
            self.failures -= 1
            raise StoreUnavailable("disk I/O error (injected)")
        return await super().finish(worker_id, results, now)


async def test_an_outcome_the_store_failed_to_record_is_retried_not_resent(
    tmp_path: object,
) -> None:
    """Issue 14 item 16: the outcome was lost (and the delivery sent again after its
    lease); now the record is retried while the lease is held, counted and logged."""
    store = FlakyFinishStore(f"{tmp_path}/ingestd.db", failures=3)
    await store.open()
    recorder = Recorder()
    directory = serving(recorder)
    policy = RetryPolicy.from_schedule([0, 5])
    errors_before = metrics.STORE_ERRORS.labels("finish")._value.get()
    worker = Worker(store, directory, lambda _name: policy, lease=2.0, poll_interval=0.05)
    await store.accept([routed(f"f{i}") for i in range(3)], 1.0)
    worker.start()
    try:
        await drained(store, timeout=15)
        await asyncio.sleep(2.5)  # past the lease: nothing comes back to be sent again
        assert sorted(recorder.delivered) == ["f0", "f1", "f2"]  # each exactly once
        assert store.failures == 0
        assert metrics.STORE_ERRORS.labels("finish")._value.get() - errors_before >= 3
    finally:
        await worker.stop()
        await store.close()


class Hangs:
    """Never answers; counts the attempts it was cancelled out of."""

    def __init__(self) -> None:
        self.cancelled = 0

    async def deliver(self, job: Job) -> Attempt:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return Attempt(ok=True)

    async def close(self) -> None:
        return None


async def test_a_batch_timer_ends_hanging_attempts_as_failures(tmp_path: object) -> None:
    """One timer per claimed batch (not one asyncio.timeout per job) bounds its attempts:
    the hanging ones fail with a timeout and are retried; the worker goes on."""
    store = SQLiteStore(f"{tmp_path}/ingestd.db")
    await store.open()
    hangs = Hangs()
    directory = serving(hangs)
    policy = RetryPolicy.from_schedule([0, 3600])
    worker = Worker(store, directory, lambda _name: policy, attempt_timeout=0.3, poll_interval=0.05)
    await store.accept([routed(f"h{i}") for i in range(3)], 1.0)
    worker.start()
    try:

        async def failed() -> None:
            while (await store.depth()).failed < 3:
                await asyncio.sleep(0.05)

        await asyncio.wait_for(failed(), timeout=10)
        assert hangs.cancelled == 3
        report = await store.status("default", "h0")
        assert report is not None
        (d,) = report.deliveries
        assert (d.attempts, d.last_error) == (1, "timed out after 0.3s")
        assert worker.in_flight == 0
    finally:
        await worker.stop()
        await store.close()


class BrokenFinishStore(SQLiteStore):
    """A real SQLite store whose first outcome commit fails with a bug, not an outage."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.broken = True

    async def finish(self, worker_id: str, results: Sequence[JobResult], now: float) -> int:
        if self.broken:
            self.broken = False
            raise RuntimeError("a bug in finish (injected)")
        return await super().finish(worker_id, results, now)


async def test_outcomes_a_bug_kept_from_the_store_are_sent_again_after_their_leases(
    tmp_path: object,
) -> None:
    """Not an outage, so not retried: the jobs are let go (their leases run out and they
    are delivered again), and the worker goes on recording outcomes."""
    store = BrokenFinishStore(f"{tmp_path}/ingestd.db")
    await store.open()
    recorder = Recorder()
    directory = serving(recorder)
    policy = RetryPolicy.from_schedule([0, 5])
    worker = Worker(store, directory, lambda _name: policy, lease=0.6, poll_interval=0.05)
    await store.accept([routed(f"b{i}") for i in range(3)], 1.0)
    worker.start()
    try:
        await drained(store, timeout=15)
        assert sorted(recorder.delivered) == ["b0", "b0", "b1", "b1", "b2", "b2"]
        assert worker.in_flight == 0
    finally:
        await worker.stop()
        await store.close()
