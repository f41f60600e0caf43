"""The load generator: sender processes, each an event loop of minimal HTTP/1.1 connections.

Why by hand: the generator must not be what limits a benchmark. One aiohttp request costs tens
of microseconds of Python; here a request is one `transport.write` of prebuilt bytes and a
response one `find` for the end of the head, driven by protocol callbacks (no task per request).
Several processes share the load (each its own loop, connections and histograms), and the
parent merges their histograms.

Open loop (`rate`): request i of a process is *intended* at start + i/rate. A connection that is
free sends the next due request; when every connection is busy, due requests wait, and their
latency still counts from the intended time (coordinated-omission correction: a stalled server
cannot hide the requests it stopped the generator from sending). A request may leave up to
EARLY seconds before its intended time (timers have millisecond granularity); its latency then
counts from when it was sent, so it is never shorter than the true service time.

Closed loop (`concurrency`): every connection sends its next request as soon as the previous
answer is read; latency is the service time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, cast
from urllib.parse import urlsplit

import msgspec

from ingestd.bench.histogram import Histogram

EARLY = 0.001
"""How far ahead of its intended time a request may be sent (timer granularity)."""
PROGRESS_EVERY = 0.25
DUP_MEMORY = 100_000
"""How many accepted ids a process remembers to resend as duplicates."""


@dataclass(frozen=True)
class LoadSpec:
    """What to send, how fast and for how long (the same for every process)."""

    url: str
    path: str = "/ingest"
    rate: float | None = None
    concurrency: int = 64
    duration: float | None = 10.0
    requests: int | None = None
    batch: int = 0
    duplicates: float = 0.0
    source: str = "bench"
    event_type: str = "bench.event"
    payload_bytes: int = 0
    processes: int = 1
    run_id: str = "run"
    e2e: bool = False
    timeout: float = 10.0
    headers: tuple[tuple[str, str], ...] = ()

    @property
    def host_port(self) -> tuple[str, int]:
        parts = urlsplit(self.url)
        return parts.hostname or "127.0.0.1", parts.port or 80

    def share(self, index: int) -> tuple[int, int | None]:
        """(connections, request limit) of process `index`."""
        p = self.processes
        conns = self.concurrency // p + (1 if index < self.concurrency % p else 0)
        limit: int | None = None
        if self.requests is not None:
            limit = max(0, math.ceil((self.requests - index) / p))
        elif self.rate is not None and self.duration is not None:
            total = math.floor(self.rate * self.duration)
            limit = max(0, math.ceil((total - index) / p))
        return max(1, conns), limit


class BatchCounts(msgspec.Struct):
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0


class ItemStatus(msgspec.Struct):
    status: str = "rejected"


class BatchResults(msgspec.Struct):
    results: list[ItemStatus] = []


_decode_counts = msgspec.json.Decoder(BatchCounts).decode
_decode_results = msgspec.json.Decoder(BatchResults).decode


@dataclass
class Recorder:
    """Per-process accounting: latency histograms, statuses, event outcomes, a timeline.

    `record(intended, sent, done)` is the coordinated-omission rule in one place: latency is
    measured from the intended time, unless the request left early, then from when it left.
    """

    start: float
    open_loop: bool
    seconds: dict[int, Histogram] = field(default_factory=dict)
    service: Histogram = field(default_factory=Histogram)
    lag: Histogram = field(default_factory=Histogram)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("sent", "resent", "accepted", "duplicate", "rejected", "failed"), 0
        )
    )
    requests: int = 0
    last_done: float = 0.0

    def record(self, intended: float, sent: float, done: float) -> int:
        """Account one answered request; the corrected latency in microseconds."""
        origin = intended if intended < sent else sent
        latency = int((done - origin) * 1e6)
        sec = int(done - self.start)
        hist = self.seconds.get(sec)
        if hist is None:
            hist = self.seconds[sec] = Histogram()
        hist.record(latency)
        if self.open_loop:
            self.service.record(int((done - sent) * 1e6))
            if sent > intended:
                self.lag.record(int((sent - intended) * 1e6))
            else:
                self.lag.record(0)
        self.requests += 1
        if done > self.last_done:
            self.last_done = done
        return latency

    def status(self, code: int) -> None:
        self.statuses[code] = self.statuses.get(code, 0) + 1

    def error(self, kind: str, n: int = 1) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + n

    def latency(self) -> Histogram:
        return Histogram.merged(self.seconds.values())


class Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time (no pipelining)."""

    __slots__ = (
        "body_start",
        "buf",
        "closing",
        "head",
        "ids",
        "intended",
        "need",
        "sender",
        "sent",
        "status",
        "transport",
    )

    def __init__(self, sender: Sender) -> None:
        self.sender = sender
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.body_start = -1
        self.need = 0
        self.status = 0
        self.head = b""
        self.intended = 0.0
        self.sent = 0.0
        self.ids: list[int] | None = None
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def send(self, payload: bytes, intended: float, ids: list[int], now: float) -> None:
        assert self.transport is not None
        self.intended = intended
        self.ids = ids
        self.sent = now
        self.transport.write(payload)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if self.body_start < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            head = buf[:end].lower()
            try:
                self.status = int(buf[9:12])
            except ValueError:
                self.status = 0
            self.head = head
            self.body_start = end + 4
            i = head.find(b"\ncontent-length:")
            if i >= 0:
                j = head.find(b"\r", i)
                self.need = end + 4 + int(head[i + 16 : j if j >= 0 else len(head)])
            elif b"chunked" in head:
                self.need = -1
            else:
                self.need = end + 4
        if self.need >= 0:
            if len(buf) < self.need:
                self.buf = buf
                return
            body = buf[self.body_start : self.need]
        else:
            if not buf.endswith(b"0\r\n\r\n"):
                self.buf = buf
                return
            body = dechunk(buf[self.body_start :])
        head = self.head
        self.buf = b""
        self.body_start = -1
        ids = self.ids
        self.ids = None
        if ids is None:  # an answer nobody asked for
            return
        if b"connection: close" in head:
            self.closing = True
        self.sender.on_response(self, self.status, head, body, ids)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.sender.on_lost(self)


def dechunk(data: bytes) -> bytes:
    out = []
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            break
        size = int(data[pos:eol].split(b";")[0], 16)
        if size == 0:
            break
        out.append(data[eol + 2 : eol + 2 + size])
        pos = eol + 2 + size + 2
    return b"".join(out)


class Sender:
    """The load of one process."""

    def __init__(
        self,
        spec: LoadSpec,
        index: int,
        progress: Callable[[dict[str, Any]], None] | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.clock = clock
        self.index = index
        self.conns_wanted, self.limit = spec.share(index)
        self.progress = progress
        self.loop = loop or asyncio.get_event_loop()
        self.host, self.port = spec.host_port
        self.open_loop = spec.rate is not None
        self.interval = spec.processes / spec.rate if spec.rate else 0.0
        self.offset = index / spec.rate if spec.rate else 0.0
        self.start = 0.0
        self.deadline = math.inf
        self.next_i = 0
        self.in_flight: set[Conn] = set()
        self.idle: list[Conn] = []
        self.conns: set[Conn] = set()
        self.timer: asyncio.TimerHandle | None = None
        self.stopping = False
        self.done: asyncio.Future[None] | None = None
        self.rec = Recorder(0.0, self.open_loop)
        self.acked: list[int] = []
        self.acked_pos = 0
        self.ack_times: list[tuple[str, float]] = []
        self.seq = 0
        self.prefix = f"{spec.run_id}-{index}-"
        extra = "".join(f"{k}: {v}\r\n" for k, v in spec.headers)
        self.request_head = (
            f"POST {spec.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\n{extra}Content-Length: "
        ).encode()
        self.event_head = (
            '{"source":' + msgspec.json.encode(spec.source).decode() + ',"type":'
            f'{msgspec.json.encode(spec.event_type).decode()},"id":"{self.prefix}'
        ).encode()
        self.event_tail = (',"pad":"' + "x" * spec.payload_bytes + '"}}').encode()
        self.rng = random.Random(f"{spec.run_id}-{index}")

    # -- requests ------------------------------------------------------------------------

    def event(self, seq: int) -> bytes:
        """The body of event `seq`: the same bytes every time (duplicates must match)."""
        return b'%s%d","data":{"n":%d%s' % (self.event_head, seq, seq, self.event_tail)

    def next_ids(self) -> list[int]:
        n = self.spec.batch or 1
        ids = []
        dup = self.spec.duplicates
        for _ in range(n):
            if dup and self.acked and self.rng.random() < dup:
                ids.append(self.acked[self.rng.randrange(len(self.acked))])
                self.rec.events["resent"] += 1
            else:
                ids.append(self.seq)
                self.seq += 1
            self.rec.events["sent"] += 1
        return ids

    def payload(self, ids: list[int]) -> bytes:
        if self.spec.batch:
            body = b'{"events":[' + b",".join(self.event(i) for i in ids) + b"]}"
        else:
            body = self.event(ids[0])
        return b"%s%d\r\n\r\n%s" % (self.request_head, len(body), body)

    def fire(self, conn: Conn, intended: float) -> None:
        ids = self.next_ids()
        self.in_flight.add(conn)
        conn.send(self.payload(ids), intended, ids, self.clock())

    # -- scheduling ----------------------------------------------------------------------

    def intended(self, i: int) -> float:
        return self.start + self.offset + i * self.interval

    def more(self) -> bool:
        if self.stopping:
            return False
        if self.limit is not None and self.next_i >= self.limit:
            return False
        return not (self.limit is None and self.clock() >= self.deadline)

    def dispatch(self, now: float) -> None:
        """Open loop: give every due request a free connection."""
        while self.idle and self.more():
            intended = self.intended(self.next_i)
            if intended > now + EARLY:
                break
            self.next_i += 1
            self.fire(self.idle.pop(), intended)

    def arm(self, now: float) -> None:
        if self.timer is None and self.idle and self.more():
            delay = self.intended(self.next_i) - EARLY - now
            self.timer = self.loop.call_later(max(0.0, delay), self.tick)

    def tick(self) -> None:
        self.timer = None
        now = self.clock()
        self.dispatch(now)
        self.arm(now)
        self.check_done()

    def kick_closed(self) -> None:
        now = self.clock()
        while self.idle and self.more():
            self.next_i += 1
            self.fire(self.idle.pop(), now)
        self.check_done()

    def check_done(self) -> None:
        done = self.done
        if done is not None and not done.done() and not self.in_flight and not self.more():
            done.set_result(None)

    # -- answers -------------------------------------------------------------------------

    def on_response(
        self, conn: Conn, status: int, head: bytes, body: bytes, ids: list[int]
    ) -> None:
        now = self.clock()
        rec = self.rec
        rec.record(conn.intended, conn.sent, now)
        rec.status(status)
        ev = rec.events
        accepted: list[int] = []
        if status == 207:
            try:
                if self.spec.e2e or self.spec.duplicates:
                    items = _decode_results(body).results
                    for seq, item in zip(ids, items, strict=False):
                        if item.status == "duplicate":
                            ev["duplicate"] += 1
                        elif item.status == "rejected":
                            ev["rejected"] += 1
                        else:
                            ev["accepted"] += 1
                            accepted.append(seq)
                else:
                    counts = _decode_counts(body)
                    ev["accepted"] += counts.accepted
                    ev["duplicate"] += counts.duplicate
                    ev["rejected"] += counts.rejected
            except (msgspec.DecodeError, msgspec.ValidationError):
                ev["failed"] += len(ids)
        elif 200 <= status < 300:
            if b"idempotent-replayed: true" in head:
                ev["duplicate"] += len(ids)
            else:
                ev["accepted"] += len(ids)
                accepted = ids
        elif status in (409, 422, 400, 413, 415):
            ev["rejected"] += len(ids)
        else:
            ev["failed"] += len(ids)
        if accepted:
            if self.spec.duplicates:
                for seq in accepted:
                    if len(self.acked) < DUP_MEMORY:
                        self.acked.append(seq)
                    else:
                        self.acked[self.acked_pos] = seq
                        self.acked_pos = (self.acked_pos + 1) % DUP_MEMORY
            if self.spec.e2e:
                prefix = self.prefix
                self.ack_times.extend((f"{prefix}{seq}", now) for seq in accepted)
        self.in_flight.discard(conn)
        if conn.closing:
            self.retire(conn)
            return
        self.release(conn, now)

    def release(self, conn: Conn, now: float) -> None:
        if self.open_loop:
            if self.more() and self.intended(self.next_i) <= now + EARLY:
                self.next_i += 1
                self.fire(conn, self.intended(self.next_i - 1))
                return
            self.idle.append(conn)
            self.arm(now)
        elif self.more():
            self.next_i += 1
            self.fire(conn, now)
            return
        else:
            self.idle.append(conn)
        self.check_done()

    def retire(self, conn: Conn) -> None:
        """Close a connection the server wants closed and open a new one in its place."""
        self.conns.discard(conn)
        if conn.transport is not None:
            conn.closing = True
            conn.transport.close()
        if not self.stopping:
            self.loop.create_task(self.reconnect())
        self.check_done()

    def on_lost(self, conn: Conn) -> None:
        if conn in self.in_flight:
            self.in_flight.discard(conn)
            self.rec.error("connection closed")
            self.rec.events["failed"] += len(conn.ids or [1])
            conn.ids = None
        if conn in self.idle:
            self.idle.remove(conn)
        if conn in self.conns and not conn.closing:
            self.conns.discard(conn)
            if not self.stopping:
                self.loop.create_task(self.reconnect())
        self.check_done()

    async def connect(self) -> Conn:
        _, proto = await self.loop.create_connection(lambda: Conn(self), self.host, self.port)
        assert isinstance(proto, Conn)
        self.conns.add(proto)
        return proto

    async def reconnect(self) -> None:
        try:
            conn = await self.connect()
        except OSError:
            self.rec.error("connect")
            await asyncio.sleep(0.1)
            if not self.stopping:
                self.loop.create_task(self.reconnect())
            return
        self.release(conn, self.clock())

    # -- the run -------------------------------------------------------------------------

    async def open(self) -> None:
        conns = await asyncio.gather(*(self.connect() for _ in range(self.conns_wanted)))
        self.idle.extend(conns)

    def watchdog(self) -> None:
        """Time out stuck requests and report progress, every PROGRESS_EVERY seconds."""
        now = self.clock()
        for conn in list(self.in_flight):
            if now - conn.sent > self.spec.timeout:
                self.in_flight.discard(conn)
                self.rec.error("timeout")
                self.rec.events["failed"] += len(conn.ids or [1])
                conn.ids = None
                self.retire(conn)
        if self.progress is not None:
            self.progress(self.snapshot(now))
        if self.done is not None and not self.done.done():
            self.loop.call_later(PROGRESS_EVERY, self.watchdog)

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "t": now,
            "requests": self.rec.requests,
            "errors": sum(self.rec.errors.values())
            + sum(n for code, n in self.rec.statuses.items() if code >= 400),
            "events": self.rec.events["accepted"],
            "backlog": self.backlog(now),
        }

    def backlog(self, now: float) -> int:
        """Open loop: requests already due but not sent (every connection busy)."""
        if not self.open_loop or self.stopping:
            return 0
        due = math.floor((now - self.start - self.offset) / self.interval) + 1
        if self.limit is not None:
            due = min(due, self.limit)
        return max(0, due - self.next_i)

    async def run(self, start: float) -> dict[str, Any]:
        spec = self.spec
        self.start = start
        self.rec.start = start
        self.done = self.loop.create_future()
        if spec.duration is not None and spec.requests is None:
            self.deadline = start + spec.duration
        await asyncio.sleep(max(0.0, start - self.clock()))
        cpu0 = time.process_time()
        self.watchdog()
        if self.open_loop:
            self.tick()
        else:
            self.kick_closed()
        # Hard stop: the load's own length plus one request timeout to drain.
        if self.limit is not None and self.open_loop:
            length = (self.limit * self.interval) if self.limit else 0.0
        elif spec.duration is not None and spec.requests is None:
            length = spec.duration
        else:
            length = math.inf
        hard = length + spec.timeout + 1.0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.done), None if math.isinf(hard) else hard)
        end = self.clock()
        cpu = time.process_time() - cpu0
        self.stopping = True
        if self.timer is not None:
            self.timer.cancel()
        unsent = 0
        if self.limit is not None:
            unsent = max(0, self.limit - self.next_i)
        if unsent:
            self.rec.error("not sent (run stopped)", unsent)
        if self.in_flight:
            self.rec.error("no answer (run stopped)", len(self.in_flight))
        for conn in list(self.conns):
            if conn.transport is not None:
                conn.closing = True
                conn.transport.close()
        rec = self.rec
        return {
            "index": self.index,
            "start": start,
            "end": max(rec.last_done, start) if rec.requests else end,
            "cpu": cpu,
            "wall": end - start,
            "connections": self.conns_wanted,
            "requests": rec.requests,
            "statuses": rec.statuses,
            "errors": rec.errors,
            "events": rec.events,
            "seconds": {sec: h.to_dict() for sec, h in rec.seconds.items()},
            "service": rec.service.to_dict(),
            "lag": rec.lag.to_dict(),
            "acked": self.ack_times if spec.e2e else None,
        }


def sender_process(spec: LoadSpec, index: int, pipe: Connection) -> None:
    """Entry point of one sender process: connect, report ready, wait for the start, run."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        sender = Sender(spec, index, progress=lambda snap: pipe.send(("progress", index, snap)))
        try:
            loop.run_until_complete(sender.open())
        except OSError as exc:
            pipe.send(("error", index, f"cannot connect to {spec.url}: {exc}"))
            return
        pipe.send(("ready", index, None))
        message = pipe.recv()
        if message[0] != "start":
            return
        result = loop.run_until_complete(sender.run(float(message[1])))
        pipe.send(("result", index, result))
    except Exception as exc:  # reported to the parent, which prints it
        with contextlib.suppress(Exception):
            pipe.send(("error", index, f"{type(exc).__name__}: {exc}"))
    finally:
        loop.close()
        pipe.close()
