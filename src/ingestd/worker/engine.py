"""The claim loop: lease due jobs, run them with bounded concurrency, record outcomes.

Outcomes are group-committed like acceptance: an attempt that ends appends its outcome to
one buffer, and one recorder task commits whatever has gathered (no future per job), then
counts the metrics of the whole group. One timer per claimed batch bounds its attempts
(not one timeout per job). Leases are extended while jobs run and until their outcomes
are committed; a worker that dies loses its leases and another claims the jobs again. A
destination whose in-flight count reached its cap is excluded from claiming, so a hanging
receiver holds at most its own slots and never the worker's capacity.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec

from ingestd.destinations.base import Attempt
from ingestd.errors import StoreUnavailable
from ingestd.model import AttemptRecord, Job
from ingestd.obs import logs, metrics, tracing
from ingestd.routing import Directory, Route, runs_operator_code
from ingestd.store.protocol import JobQueue, JobResult, Verdict
from ingestd.worker import attempts
from ingestd.worker.retry import RetryPolicy

log = logging.getLogger("ingestd.worker")
CRASHES_TO_DEAD = 2
"""Leases lost with no outcome after which a job that runs operator code is dead-lettered:
the first may be another job's doing, the second happened while it ran alone."""
MAX_GROUP = 2000
"""Most outcomes one store `finish` commits."""


class Gate(Protocol):
    """Decides whether a destination may be called now (the circuit breaker's seat)."""

    def blocked(self) -> Sequence[str]:
        """Destinations not to claim for at all right now."""

    def admit(self, destination: str, now: float) -> float | None:
        """None to go ahead; otherwise the time to defer the job to (attempt refunded)."""

    def record(self, destination: str, attempt: Attempt, now: float) -> None:
        """Learn from an attempt's outcome."""


class OpenGate:
    """No breaker: every destination is always admitted."""

    def blocked(self) -> Sequence[str]:
        return ()

    def admit(self, destination: str, now: float) -> float | None:
        return None

    def record(self, destination: str, attempt: Attempt, now: float) -> None:
        return None


class Meters:
    """One destination's metric children (labels() takes a lock and builds a key each call)."""

    def __init__(self, destination: str) -> None:
        self.destination = destination
        self.seconds = metrics.DELIVERY_SECONDS.labels(destination)
        self.latency = metrics.DELIVERED_LATENCY.labels(destination)
        # Every verdict's series from the first attempt on, at 0: increase() over a series
        # that appears with its first dead letter would miss that one (the alert would too).
        self._outcomes: dict[Verdict, Any] = {
            verdict: metrics.DELIVERIES.labels(destination, verdict.value) for verdict in Verdict
        }

    def outcome(self, verdict: Verdict) -> Any:
        return self._outcomes[verdict]


class Tally:
    """One destination's metrics since the last group was recorded: counted per group, so
    a job costs a list append instead of three locked metric updates."""

    __slots__ = ("latencies", "meters", "seconds", "verdicts")

    def __init__(self, meters: Meters) -> None:
        self.meters = meters
        self.verdicts: list[Verdict] = []
        self.seconds: list[float] = []
        self.latencies: list[float] = []

    def publish(self) -> None:
        if self.verdicts:
            for verdict, count in collections.Counter(self.verdicts).items():
                self.meters.outcome(verdict).inc(count)
            self.verdicts.clear()
        if self.seconds:
            metrics.observe_all(self.meters.seconds, self.seconds)
            self.seconds.clear()
        if self.latencies:
            metrics.observe_all(self.meters.latency, self.latencies)
            self.latencies.clear()


class Batch:
    """The attempts of one claim: one timer bounds them all."""

    __slots__ = ("tasks", "timer")

    def __init__(self) -> None:
        self.tasks: dict[asyncio.Task[None], Job] = {}
        self.timer: asyncio.TimerHandle | None = None


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Runs deliveries for every destination in the Directory."""

    def __init__(
        self,
        store: JobQueue,
        directory: Directory,
        policy_for: Callable[[str], RetryPolicy],
        *,
        gate: Gate | None = None,
        concurrency: int = 256,
        batch: int = 256,
        lease: float = 30.0,
        poll_interval: float = 1.0,
        attempt_timeout: float = 60.0,
        on_disable: Callable[[str, str], None] | None = None,
        worker_id: str | None = None,
        attempt_body_bytes: int | None = 4096,
    ) -> None:
        self.id = worker_id or new_worker_id()
        self._store = store
        self._directory = directory
        self._policy_for = policy_for
        self._gate: Gate = gate or OpenGate()
        self._concurrency = concurrency
        self._batch = batch
        self._lease = lease
        self._poll = poll_interval
        self._attempt_timeout = attempt_timeout
        self._on_disable = on_disable
        self._body_bytes = attempt_body_bytes
        """Bytes of a response body the attempt log keeps; None: no attempt log."""
        self._redactors: dict[str, tuple[object, attempts.Redactor]] = {}
        self._inflight: dict[int, Job] = {}
        """Every job this worker holds a lease on: attempts running or outcomes committing."""
        self._tasks: dict[asyncio.Task[None], Job] = {}
        """The attempts running."""
        self._running = 0
        """Jobs claimed whose attempt has not ended; `concurrency` caps this."""
        self._timed_out: set[int] = set()
        """Jobs whose batch's timer cancelled their attempt (a timeout, not a stop)."""
        self._outcomes: list[tuple[Job, JobResult]] = []
        """Outcomes waiting to be committed, in the order attempts ended."""
        self._outcome_ready = asyncio.Event()
        self._recorded = asyncio.Event()
        """Set after each group is committed (or given up): run_now waits on it."""
        self._closing = False
        self._recorder_task: asyncio.Task[None] | None = None
        self._tallies: dict[str, Tally] = {}
        self._max_held = concurrency + 2 * batch
        """Cap on held jobs: claiming goes on while outcomes commit, within this bound."""
        self._per_destination: dict[str, int] = {}
        self._meters: dict[str, Meters] = {}
        self._slot = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, *, claim: bool = True) -> None:
        """Start recording outcomes, and (unless `claim` is False) the claim loop."""
        self._recorder_task = asyncio.create_task(self._record_outcomes(), name="worker-outcomes")
        self._heartbeat_task = asyncio.create_task(self._heartbeat(), name="worker-heartbeat")
        if claim:
            self._loop_task = asyncio.create_task(self._run(), name="worker-claim-loop")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming, let running jobs finish for `grace` seconds, release the rest."""
        self._stopping = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        running = list(self._tasks)
        if running:
            _, late = await asyncio.wait(running, timeout=grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        self._closing = True
        self._outcome_ready.set()
        if self._recorder_task is not None:
            await self._recorder_task
        self._publish()
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task

    def failure(self) -> str | None:
        """Why the claim loop is not running (None while it runs, or before it starts)."""
        task = self._loop_task
        if task is None or not task.done() or self._stopping:
            return None
        if task.cancelled():
            return "the claim loop was cancelled"
        return f"the claim loop ended: {task.exception()!r}"

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    # -- claiming ----------------------------------------------------------------------

    def _excluded(self) -> list[str]:
        excluded = list(self._gate.blocked())
        for name in self._directory.names():
            route = self._directory.get(name)
            if route is None:
                continue
            if not route.config.enabled or (
                self._per_destination.get(name, 0) >= route.config.max_in_flight
            ):
                excluded.append(name)
        return excluded

    async def _run(self) -> None:
        backoff = 0.1
        while not self._stopping:
            # A slot frees when an attempt ends, not when its outcome is committed: the next
            # claim overlaps the previous batch's finish (one round trip less per batch).
            free = min(self._concurrency - self._running, self._max_held - len(self._inflight))
            if free <= 0:
                self._slot.clear()
                await self._slot.wait()
                continue
            try:
                jobs = await self._store.claim(
                    self.id,
                    min(free, self._batch),
                    self._lease,
                    time.time(),
                    exclude=self._excluded(),
                )
            except StoreUnavailable as exc:
                metrics.store_error("claim")
                log.warning("claim failed, backing off %.1fs: %s", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            if not jobs:
                await self._store.wait_for_work(self._poll)
                continue
            suspect = next((j for j in jobs if self._suspect(j)), None)
            if suspect is not None:
                await self._run_alone(suspect, jobs)
                continue
            self._spawn_batch(jobs)
            metrics.IN_FLIGHT.set(len(self._inflight))

    def _suspect(self, job: Job) -> bool:
        """Its process ended during an earlier attempt, and that attempt runs operator code
        in this process (so it may have been the cause)."""
        if not job.interrupted:
            return False
        route = self._directory.get(job.destination)
        return route is not None and runs_operator_code(route.destination)

    async def _run_alone(self, suspect: Job, claimed: Sequence[Job]) -> None:
        """Give the whole batch back, let every held job finish, then claim and run the
        suspect with nothing else in flight: if the process ends again, nothing else was
        running to blame (see CRASHES_TO_DEAD). Only after a crash, so never on the fast
        path."""
        log.warning(
            "delivery %s to %s: its process ended during an earlier attempt; running it alone",
            suspect.delivery_id,
            suspect.destination,
            extra=logs.delivery_fields(suspect),
        )
        try:
            await self._store.release(self.id, [j.id for j in claimed], time.time())
            while self._inflight:
                self._slot.clear()
                await self._slot.wait()
            jobs = await self._store.claim(
                self.id, 1, self._lease, time.time(), job_ids=[suspect.id]
            )
        except StoreUnavailable as exc:
            log.warning("could not run delivery %s alone: %s", suspect.delivery_id, exc)
            await asyncio.sleep(1.0)
            return
        if jobs:  # none if another worker took it meanwhile
            await asyncio.wait(self._spawn_batch(jobs))

    async def run_now(self, job_ids: Sequence[int]) -> None:
        """Claim these jobs and run them to their outcome (synchronous ingestion mode)."""
        if not job_ids:
            return
        jobs = await self._store.claim(
            self.id, len(job_ids), self._lease, time.time(), job_ids=job_ids
        )
        if not jobs:
            return
        await asyncio.wait(self._spawn_batch(jobs))
        # ...and their outcomes committed (or given up on, when stopping)
        while any(job.id in self._inflight for job in jobs):
            self._recorded.clear()
            await self._recorded.wait()

    def _spawn_batch(self, jobs: Sequence[Job]) -> list[asyncio.Task[None]]:
        """One task per job (its attempt); one timer for the batch's attempts."""
        batch = Batch()
        per_destination = self._per_destination
        done = functools.partial(self._done, batch)
        for job in jobs:
            task = asyncio.create_task(self._execute(job), name=f"delivery-{job.id}")
            self._inflight[job.id] = job
            self._tasks[task] = job
            batch.tasks[task] = job
            per_destination[job.destination] = per_destination.get(job.destination, 0) + 1
            task.add_done_callback(done)
        self._running += len(jobs)
        batch.timer = asyncio.get_running_loop().call_later(
            self._attempt_timeout, self._time_out, batch
        )
        return list(batch.tasks)

    def _time_out(self, batch: Batch) -> None:
        """The batch's attempts that still run have had `attempt_timeout` seconds."""
        batch.timer = None
        for task, job in batch.tasks.items():
            if not task.done():
                self._timed_out.add(job.id)
                task.cancel()

    def _attempt_ended(self, job: Job) -> None:
        self._running -= 1
        self._per_destination[job.destination] -= 1
        self._slot.set()

    def _done(self, batch: Batch, task: asyncio.Task[None]) -> None:
        job = batch.tasks.pop(task)
        self._tasks.pop(task, None)
        if self._timed_out:
            self._timed_out.discard(job.id)
        if not batch.tasks and batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None

    # -- running one job -----------------------------------------------------------------

    async def _execute(self, job: Job) -> None:
        try:
            result = await self._attempt(job)
        except asyncio.CancelledError:
            # Stopping: give the job back without spending its attempt.
            self._inflight.pop(job.id, None)
            with contextlib.suppress(Exception):
                await self._store.release(self.id, [job.id], time.time())
            raise
        except BaseException:
            self._inflight.pop(job.id, None)  # no outcome: its lease runs out
            raise
        finally:
            self._attempt_ended(job)
        self._outcomes.append((job, result))
        self._outcome_ready.set()

    async def _record_outcomes(self) -> None:
        """Commit the outcomes gathered, a group at a time, retrying while the store fails:
        the leases are held (and extended) meanwhile, so a lost outcome does not mean the
        delivery is sent again once its lease runs out. Given up only when the worker
        stops."""
        backoff = 0.1
        failures = 0
        while True:
            if not self._outcomes:
                self._publish()
                if self._closing:
                    return
                self._outcome_ready.clear()
                await self._outcome_ready.wait()
                continue
            group = self._outcomes[:MAX_GROUP]
            del self._outcomes[:MAX_GROUP]
            self._publish()
            try:
                await self._store.finish(self.id, [r for _, r in group], time.time())
            except StoreUnavailable as exc:
                failures += 1
                metrics.store_error("finish")
                job = group[0][0]
                if failures == 1:
                    log.warning(
                        "recording the outcomes of %d deliveries (%s, ...) failed, retrying: %s",
                        len(group),
                        job.delivery_id,
                        exc,
                        extra=logs.delivery_fields(job),
                    )
                if not self._closing:
                    self._outcomes[:0] = group
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                for job, _ in group:
                    log.error(
                        "delivery %s: outcome not recorded (worker stopping); it is sent "
                        "again after its lease",
                        job.delivery_id,
                        extra=logs.delivery_fields(job),
                    )
            except Exception:
                # Not an outage (a bug, a row the store refuses): retrying would hold these
                # jobs and extend their leases for as long as the process lives. Let the
                # leases run out instead; the jobs are sent again, as after a crash.
                metrics.store_error("finish")
                log.exception(
                    "recording the outcomes of %d deliveries failed; they are sent again "
                    "after their leases",
                    len(group),
                )
            else:
                if failures:
                    log.warning(
                        "outcomes of %d deliveries recorded after %d failed attempt(s)",
                        len(group),
                        failures,
                    )
            failures = 0
            backoff = 0.1
            inflight = self._inflight
            for job, _ in group:
                inflight.pop(job.id, None)
            metrics.IN_FLIGHT.set(len(inflight))
            self._slot.set()
            self._recorded.set()

    def _publish(self) -> None:
        for tally in self._tallies.values():
            tally.publish()

    def _tally(self, destination: str) -> Tally:
        tally = self._tallies.get(destination)
        if tally is None:
            tally = self._tallies[destination] = Tally(self._meters_for(destination))
        return tally

    async def _attempt(self, job: Job) -> JobResult:
        route = self._directory.get(job.destination)
        now = time.time()
        if route is None:
            # Created in another process and not reloaded here yet (deleting a destination
            # dead-letters its deliveries in the store): try again shortly, attempt refunded.
            return JobResult(
                job_id=job.id,
                verdict=Verdict.DEFER,
                run_at=now + 1.0,
                error=f"destination {job.destination!r} is not loaded in this worker",
            )
        if route.running >= route.config.max_in_flight:
            # One claim batch can hold more of a destination's jobs than its cap: the
            # excess goes back at once (attempt refunded) instead of piling onto it.
            return JobResult(job_id=job.id, verdict=Verdict.DEFER, run_at=now)
        defer_until = self._gate.admit(job.destination, now)
        if defer_until is not None:
            return JobResult(
                job_id=job.id, verdict=Verdict.DEFER, run_at=defer_until, error="circuit open"
            )
        if job.interrupted >= CRASHES_TO_DEAD and runs_operator_code(route.destination):
            return self._crash_looped(job, now)
        span = None
        if tracing.tracer().enabled:
            span = tracing.start_delivery(
                job.event.trace, job.destination, route.config.kind, job.attempt, job.delivery_id
            )
        started_at = time.time()
        started = time.perf_counter()
        route.running += 1
        try:
            outcome = await self._call(route, job)
        except asyncio.CancelledError:
            if span is not None:  # stopping: the attempt ends unrecorded, its span still ends
                tracing.end_delivery(span, None, "cancelled", "worker stopping")
            raise
        finally:
            route.running -= 1
        elapsed = time.perf_counter() - started
        now = time.time()
        self._gate.record(job.destination, outcome, now)
        if outcome.disable and self._on_disable is not None:
            self._on_disable(job.destination, outcome.error or "receiver asked to stop")
        result = self._policy_for(job.destination).decide(job.id, job.attempt, outcome, now)
        if self._body_bytes is not None:
            result = msgspec.structs.replace(
                result, attempt=self._record(job, route, outcome, result, started_at, elapsed)
            )
        if span is not None:
            tracing.end_delivery(span, outcome.status_code, result.verdict.value, outcome.error)
        tally = self._tallies.get(job.destination) or self._tally(job.destination)
        tally.verdicts.append(result.verdict)
        tally.seconds.append(elapsed)
        if result.verdict is Verdict.SUCCEEDED and job.event.received_at:
            tally.latencies.append(max(0.0, now - job.event.received_at))
        if result.verdict is Verdict.DEAD:
            log.warning(
                "delivery %s to %s is dead after attempt %d: %s",
                job.delivery_id,
                job.destination,
                job.attempt,
                result.error,
                extra=logs.delivery_fields(job),
            )
        elif result.verdict is Verdict.RETRY:
            log.info(
                "delivery %s to %s failed on attempt %d, will retry: %s",
                job.delivery_id,
                job.destination,
                job.attempt,
                result.error,
                extra=logs.delivery_fields(job),
            )
        return result

    async def _call(self, route: Route, job: Job) -> Attempt:
        """One call of the destination; whatever it raises but cancellation is a failure.
        Its batch's timer cancels it after `attempt_timeout` (see _time_out)."""
        try:
            return await route.destination.deliver(job)
        except asyncio.CancelledError:
            if not self._timed_out_now(job):
                raise
            return Attempt(ok=False, error=f"timed out after {self._attempt_timeout:g}s")
        except BaseException as exc:
            # SystemExit and KeyboardInterrupt from a handler included: a failed attempt,
            # never the end of the process.
            if self._timed_out_now(job):  # the destination turned the cancel into an error
                return Attempt(ok=False, error=f"timed out after {self._attempt_timeout:g}s")
            return Attempt(ok=False, error=f"{type(exc).__name__}: {exc}")

    def _timed_out_now(self, job: Job) -> bool:
        """This job's attempt was cancelled by its batch's timer (not by a stop): the
        cancel is taken back, as asyncio.timeout does, and the attempt has failed."""
        if job.id not in self._timed_out:
            return False
        self._timed_out.discard(job.id)
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return True

    def _crash_looped(self, job: Job, now: float) -> JobResult:
        """Its attempts ended the process (or stalled it past its lease) twice: run it no
        more, so a handler that calls os._exit or crashes the interpreter cannot loop."""
        error = (
            f"the process running this delivery ended during its attempt {job.interrupted} "
            "times, the last time running alone (its lease ran out with no outcome): "
            "dead-lettered without another attempt so it cannot crash-loop; fix the "
            "handler, then replay it"
        )
        log.error(
            "delivery %s to %s is dead: %s",
            job.delivery_id,
            job.destination,
            error,
            extra=logs.delivery_fields(job),
        )
        self._tally(job.destination).verdicts.append(Verdict.DEAD)
        return JobResult(job_id=job.id, verdict=Verdict.DEAD, error=error)

    def _meters_for(self, destination: str) -> Meters:
        meters = self._meters.get(destination)
        if meters is None:
            meters = self._meters[destination] = Meters(destination)
        return meters

    def _record(
        self,
        job: Job,
        route: Route,
        outcome: Attempt,
        result: JobResult,
        started_at: float,
        elapsed: float,
    ) -> AttemptRecord:
        """The attempt log's entry, its destination's secrets cut out."""
        known = self._redactors.get(job.destination)
        if known is None or known[0] is not route.config:  # the config changed: new secrets
            known = (
                route.config,
                attempts.Redactor(attempts.option_secrets(route.config.options())),
            )
            self._redactors[job.destination] = known
        return attempts.record(
            attempt=job.attempt,
            started_at=started_at,
            duration=elapsed,
            verdict=result.verdict.value,
            status_code=outcome.status_code,
            error=result.error if result.verdict is not Verdict.SUCCEEDED else None,
            permanent=outcome.permanent,
            headers=outcome.headers,
            body=outcome.body,
            body_bytes=self._body_bytes or 0,
            redactor=known[1],
        )

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            if self._inflight:
                try:
                    await self._store.extend(
                        self.id, list(self._inflight), time.time() + self._lease
                    )
                except StoreUnavailable as exc:
                    metrics.store_error("extend")
                    log.warning("lease extension failed: %s", exc)
