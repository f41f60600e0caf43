"""One load run: start the sender processes, show progress, merge what they measured."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import sys
import threading
import time
from collections import deque
from multiprocessing.connection import Connection
from typing import Any, TextIO

from ingestd.bench.histogram import Histogram
from ingestd.bench.load import LoadSpec, sender_process
from ingestd.bench.receiver import Receiver

START_DELAY = 0.2
"""Seconds between 'every process is connected' and the common start time."""


class BenchError(Exception):
    """The run could not happen (no server, a sender crashed)."""


class Progress:
    """A one-line progress bar on stderr (a line every few seconds when it is not a terminal)."""

    def __init__(self, spec: LoadSpec, stream: TextIO | None, label: str = "") -> None:
        self.spec = spec
        self.stream = stream
        self.tty = bool(stream is not None and stream.isatty())
        self.label = label
        self.last_line = 0.0
        self.last_requests = 0
        self.last_t = 0.0
        self.rate = 0.0
        self.width = 0

    def show(self, start: float, snaps: dict[int, dict[str, Any]], note: str = "") -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if not self.tty and now - self.last_line < 2.0:
            return
        requests = sum(s["requests"] for s in snaps.values())
        errors = sum(s["errors"] for s in snaps.values())
        backlog = sum(s.get("backlog", 0) for s in snaps.values())
        elapsed = max(0.0, now - start)
        if self.last_t and now - self.last_t >= 0.5:
            self.rate = (requests - self.last_requests) / (now - self.last_t)
            self.last_requests, self.last_t = requests, now
        elif not self.last_t:
            self.last_requests, self.last_t = requests, now
        spec = self.spec
        if spec.requests:
            frac = requests / spec.requests
            where = f"{requests:,}/{spec.requests:,} req"
        else:
            total = spec.duration or 1.0
            frac = elapsed / total
            where = f"{min(elapsed, total):5.1f}/{total:g}s {requests:,} req"
        frac = max(0.0, min(1.0, frac))
        bar = "#" * int(frac * 24) + "." * (24 - int(frac * 24))
        line = (
            f"{self.label}[{bar}] {frac * 100:3.0f}% {where}  {self.rate:,.0f} req/s  "
            f"{errors:,} err"
        )
        if backlog:
            line += f"  {backlog:,} queued"
        if note:
            line += f"  {note}"
        self.last_line = now
        if self.tty:
            pad = max(0, self.width - len(line))
            self.width = len(line)
            self.stream.write("\r" + line + " " * pad)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self) -> None:
        if self.stream is not None and self.tty:
            self.stream.write("\n")
            self.stream.flush()


async def run_load(
    spec: LoadSpec,
    *,
    progress: TextIO | None = sys.stderr,
    receiver: Receiver | None = None,
    e2e_wait: float = 30.0,
    label: str = "",
) -> dict[str, Any]:
    """Run `spec` with `spec.processes` sender processes; the merged, summarised result."""
    ctx = multiprocessing.get_context("spawn")
    loop = asyncio.get_running_loop()
    procs: list[Any] = []
    pipes: list[Connection] = []
    inbox = Inbox()

    def reader(pipe: Connection) -> None:
        """A thread per pipe, blocking reads (an event loop reader would make the pipe
        non-blocking, and a message larger than the pipe buffer would then break)."""
        while True:
            try:
                message = pipe.recv()
            except (EOFError, OSError):
                loop.call_soon_threadsafe(inbox.put, ("eof", -1, None))
                return
            loop.call_soon_threadsafe(inbox.put, message)

    try:
        for index in range(spec.processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=sender_process, args=(spec, index, child), daemon=True, name=f"bench-{index}"
            )
            proc.start()
            child.close()
            procs.append(proc)
            pipes.append(parent)
            threading.Thread(target=reader, args=(parent,), daemon=True).start()
        ready = 0
        deadline = time.monotonic() + 30.0
        while ready < spec.processes:
            message = await inbox.get(max(0.01, deadline - time.monotonic()))
            if message is None:
                raise BenchError("sender processes did not start within 30 s")
            kind, index, payload = message
            if kind == "error":
                raise BenchError(str(payload))
            if kind == "eof":
                raise BenchError("a sender process exited before it was ready")
            if kind == "ready":
                ready += 1
        start = time.monotonic() + START_DELAY
        machine0 = cpu_times()
        for pipe in pipes:
            pipe.send(("start", start))
        bar = Progress(spec, progress, label)
        snaps: dict[int, dict[str, Any]] = {}
        results: dict[int, dict[str, Any]] = {}
        while len(results) < spec.processes:
            message = await inbox.get(0.2)
            if message is None:
                bar.show(start, snaps)
                _check_alive(procs, results)
                continue
            kind, index, payload = message
            if kind == "progress":
                snaps[index] = payload
                bar.show(start, snaps)
            elif kind == "result":
                results[index] = payload
                snaps[index] = {
                    "requests": payload["requests"],
                    "errors": sum(payload["errors"].values()),
                    "events": payload["events"]["accepted"],
                }
            elif kind == "error":
                raise BenchError(str(payload))
            elif kind == "eof":
                await asyncio.sleep(0.2)  # let the process be reaped
                if inbox.empty():
                    _check_alive(procs, results)
        bar.show(start, snaps)
        machine = busy_fraction(machine0, cpu_times())
        arrivals: dict[str, float] | None = None
        if receiver is not None and spec.e2e:
            arrivals = await _wait_deliveries(receiver, results, e2e_wait, bar, start, snaps)
        bar.done()
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        for pipe in pipes:
            pipe.close()
    result = summarise(spec, [results[i] for i in sorted(results)], receiver, arrivals, machine)
    return result


def _check_alive(procs: list[Any], results: dict[int, Any]) -> None:
    for index, proc in enumerate(procs):
        if index not in results and not proc.is_alive():
            raise BenchError(
                f"sender process {index} (pid {proc.pid}) exited with code {proc.exitcode} "
                "before reporting its result"
                + (" (killed by a signal)" if (proc.exitcode or 0) < 0 else "")
            )


class Inbox:
    """Messages from the sender processes. (Not asyncio.Queue under wait_for: on Python 3.11
    a get() completing just as wait_for times out loses the item.)"""

    def __init__(self) -> None:
        self.messages: deque[tuple[str, int, Any]] = deque()
        self.wake = asyncio.Event()

    def put(self, message: tuple[str, int, Any]) -> None:
        self.messages.append(message)
        self.wake.set()

    def empty(self) -> bool:
        return not self.messages

    async def get(self, timeout: float) -> tuple[str, int, Any] | None:
        if not self.messages:
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)
        return self.messages.popleft() if self.messages else None


async def _wait_deliveries(
    receiver: Receiver,
    results: dict[int, dict[str, Any]],
    wait: float,
    bar: Progress,
    start: float,
    snaps: dict[int, dict[str, Any]],
) -> dict[str, float]:
    """Wait (at most `wait` s) until every accepted event reached the receiver."""
    wanted = {eid for r in results.values() for eid, _ in (r["acked"] or ())}
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        got = sum(1 for eid in wanted if eid in receiver.first)
        if got >= len(wanted):
            break
        bar.show(start, snaps, f"delivered {got:,}/{len(wanted):,}")
        await asyncio.sleep(0.25)
    return dict(receiver.first)


PERCENTILES = (50.0, 95.0, 99.0, 99.9)


def stats(h: Histogram) -> dict[str, float | int]:
    ps = h.percentiles(PERCENTILES)
    return {
        "count": h.count,
        "min": h.min,
        "avg": round(h.mean, 1),
        "p50": ps[50.0],
        "p95": ps[95.0],
        "p99": ps[99.0],
        "p99_9": ps[99.9],
        "max": h.max,
    }


def _add(into: dict[str, int], more: dict[Any, int]) -> dict[str, int]:
    for k, v in more.items():
        into[str(k)] = into.get(str(k), 0) + v
    return into


def summarise(
    spec: LoadSpec,
    parts: list[dict[str, Any]],
    receiver: Receiver | None = None,
    arrivals: dict[str, float] | None = None,
    machine: float | None = None,
) -> dict[str, Any]:
    """Merge the processes' measurements into the result document (the JSON output)."""
    latency = Histogram()
    service = Histogram()
    lag = Histogram()
    seconds: dict[int, Histogram] = {}
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    events: dict[str, int] = {}
    for part in parts:
        for sec, doc in part["seconds"].items():
            h = Histogram.from_dict(doc)
            latency.merge(h)
            seconds.setdefault(int(sec), Histogram()).merge(h)
        service.merge(Histogram.from_dict(part["service"]))
        lag.merge(Histogram.from_dict(part["lag"]))
        _add(statuses, part["statuses"])
        _add(errors, part["errors"])
        _add(events, part["events"])
    start = min((p["start"] for p in parts), default=0.0)
    end = max((p["end"] for p in parts), default=start)
    elapsed = max(end - start, 1e-9)
    requests = sum(p["requests"] for p in parts)
    cpu = [p["cpu"] / p["wall"] if p["wall"] > 0 else 0.0 for p in parts]
    open_loop = spec.rate is not None
    throughput = requests / elapsed
    per_event = spec.batch or 1
    result: dict[str, Any] = {
        "tool": "ingestd bench",
        "target": spec.url.rstrip("/") + spec.path,
        "mode": "open-loop" if open_loop else "closed-loop",
        "rate": spec.rate,
        "concurrency": spec.concurrency,
        "processes": spec.processes,
        "batch": spec.batch,
        "duplicates": spec.duplicates,
        "run_id": spec.run_id,
        "elapsed_s": round(elapsed, 3),
        "requests": requests,
        "throughput_rps": round(throughput, 1),
        "events_per_s": round(throughput * per_event, 1),
        "latency_us": stats(latency),
        "latency_note": (
            "from each request's intended send time (coordinated omission corrected)"
            if open_loop
            else "service time (closed loop: each connection waits for its answer)"
        ),
        "service_time_us": stats(service) if open_loop else None,
        "schedule_lag_us": stats(lag) if open_loop else None,
        "statuses": dict(sorted(statuses.items())),
        "errors": errors,
        "events": events,
        "timeline": [
            {
                "second": sec,
                "requests": h.count,
                **{k: v for k, v in stats(h).items() if k != "count"},
            }
            for sec, h in sorted(seconds.items())
        ],
        "histogram_us": latency.to_dict(),
        "e2e": None,
    }
    result["generator"] = verdict(spec, result, cpu, machine)
    cpu_seconds = sum(p["cpu"] for p in parts)
    if requests:
        per_request = cpu_seconds / requests * 1e6
        result["generator"]["cpu_us_per_request"] = round(per_request, 1)
        # What these processes could send if each had a core of its own (kernel time included).
        result["generator"]["ceiling_rps_estimate"] = round(len(parts) * 1e6 / per_request)
    if receiver is not None and arrivals is not None:
        e2e = Histogram()
        missing = 0
        early = 0
        for part in parts:
            for eid, acked in part["acked"] or ():
                got = arrivals.get(eid)
                if got is None:
                    missing += 1
                    continue
                if got < acked:
                    early += 1
                e2e.record(int((got - acked) * 1e6))
        result["e2e"] = {
            "receiver": receiver.url,
            "delivered": e2e.count,
            "missing": missing,
            "delivered_before_answer": early,
            "deliveries": receiver.deliveries,
            "redeliveries": receiver.redeliveries,
            "latency_us": stats(e2e),
            "note": "from the 2xx answer to the first delivery at the receiver (0 if earlier)",
        }
    return result


def cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot (Linux); None elsewhere."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


def busy_fraction(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def verdict(
    spec: LoadSpec, result: dict[str, Any], cpu: list[float], machine: float | None = None
) -> dict[str, Any]:
    """Was the generator the limit? Busy sender processes or a missed schedule say so."""
    busy = [round(c * 100, 1) for c in cpu]
    cores = os.cpu_count() or 1
    cpu_bound = bool(cpu) and min(cpu) >= 0.85
    reasons = []
    if cpu_bound:
        reasons.append(
            f"every sender process was busy ({', '.join(f'{b:.0f}%' for b in busy)} of a core)"
        )
    lag = result.get("schedule_lag_us") or {}
    if spec.rate is not None and result["throughput_rps"] < 0.95 * spec.rate:
        reasons.append(
            f"reached {result['throughput_rps']:,.0f} of the {spec.rate:,.0f} req/s asked "
            f"(schedule lag P50 {lag.get('p50', 0) / 1000:.1f} ms)"
        )
    saturated = machine is not None and machine >= 0.95
    bottleneck = cpu_bound
    if not cpu_bound and saturated and machine is not None:
        text = (
            f"Cannot tell which side was the limit: the machine's {cores} CPUs were "
            f"{machine:.0%} busy, so the sender processes ("
            + ", ".join(f"{b:.0f}%" for b in busy)
            + " of a core) and the server were waiting for CPU, not for each other"
            + (" (" + "; ".join(reasons) + ")" if reasons else "")
            + ". Run the server elsewhere or give the bench more idle cores."
        )
    elif cpu_bound:
        text = (
            "THE GENERATOR IS THE BOTTLENECK: "
            + "; ".join(reasons)
            + f". Throughput and latency show its limit, not the server's "
            f"(this machine has {cores} cores; add --processes or run it elsewhere)."
        )
    elif reasons:
        text = (
            "The server did not keep up: "
            + "; ".join(reasons)
            + " while the sender processes had CPU to spare."
        )
    else:
        text = "The generator kept up (sender CPU " + ", ".join(f"{b:.0f}%" for b in busy) + ")."
    return {
        "cpu_percent": busy,
        "machine_busy_percent": None if machine is None else round(machine * 100, 1),
        "bottleneck": bottleneck,
        "machine_saturated": saturated,
        "cores": cores,
        "verdict": text,
    }
