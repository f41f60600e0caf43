"""The bench's sender: coordinated-omission accounting on a virtual clock, request bodies,
response parsing and how the load is split between processes."""

from __future__ import annotations

import heapq
import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest

from ingestd.bench.load import Conn, LoadSpec, Recorder, Sender, dechunk

ANSWER = b"HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


class Sim:
    """A discrete-event loop on a virtual clock: timers and server answers, in time order."""

    def __init__(self) -> None:
        self.now = 0.0
        self.queue: list[tuple[float, int, Callable[[], None]]] = []
        self.order = itertools.count()

    def clock(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[[], None]) -> Any:
        entry = [True]
        heapq.heappush(
            self.queue, (self.now + delay, next(self.order), lambda: entry[0] and callback())
        )

        class Handle:
            def cancel(self) -> None:
                entry[0] = False

        return Handle()

    def run(self) -> None:
        while self.queue:
            when, _, callback = heapq.heappop(self.queue)
            self.now = max(self.now, when)
            callback()


class Server:
    """A transport whose answer comes `service(n)` seconds after the n-th request."""

    def __init__(self, sim: Sim, conn: Conn, service: Callable[[int], float]) -> None:
        self.sim = sim
        self.conn = conn
        self.service = service
        self.n = 0

    def write(self, data: bytes) -> None:
        delay = self.service(self.n)
        self.n += 1
        self.sim.call_later(delay, lambda: self.conn.data_received(ANSWER))

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


def drive(spec: LoadSpec, service: Callable[[int], float]) -> Sender:
    sim = Sim()
    sender = Sender(spec, 0, loop=sim, clock=sim.clock)  # type: ignore[arg-type]
    sender.start = sender.rec.start = 0.0
    conn = Conn(sender)
    conn.connection_made(Server(sim, conn, service))  # type: ignore[arg-type]
    sender.conns.add(conn)
    sender.idle.append(conn)
    sim.call_later(0.0, sender.tick if spec.rate else sender.kick_closed)
    sim.run()
    return sender


def stall_first(n: int) -> float:
    """The server stalls 5 ms on the first request, then answers in 0.1 ms."""
    return 0.005 if n == 0 else 0.0001


def spec(**kw: Any) -> LoadSpec:
    base: dict[str, Any] = {
        "url": "http://127.0.0.1:1",
        "concurrency": 1,
        "requests": 10,
        "duration": None,
    }
    return LoadSpec(**{**base, **kw})


def latencies(sender: Sender) -> list[int]:
    h = sender.rec.latency()
    out: list[int] = []
    for idx, n in sorted(h.counts.items()):
        out += [h.bounds(idx)[0]] * n
    return out


def test_open_loop_counts_latency_from_the_intended_send_time() -> None:
    sender = drive(spec(rate=1000.0), stall_first)
    assert sender.rec.requests == 10
    # Requests 1..5 were due at 1..5 ms but the only connection was stuck until 5 ms: each
    # waited, and that wait is latency. Request 6 (due at 6 ms) left early at 5.5 ms, so it
    # counts from when it left: never less than the service time.
    expected = [5000, 4100, 3200, 2300, 1400, 500, 100, 100, 100, 100]
    got = latencies(sender)
    assert len(got) == len(expected)
    for g, e in zip(got, sorted(expected), strict=True):
        assert g == pytest.approx(e, rel=0.01, abs=2)  # bucket floor: within 1/128
    corrected = sender.rec.latency()
    assert corrected.percentile(50) == pytest.approx(500, abs=2)
    assert corrected.percentile(90) == pytest.approx(4100, abs=40)
    # The uncorrected service time hides all of it: one slow request.
    service = sender.rec.service
    assert service.count == 10
    assert service.percentile(90) == pytest.approx(100, abs=2)
    assert service.max == pytest.approx(5000, abs=2)
    # Schedule lag: how late each request left (0 when on time or early).
    lag = sender.rec.lag
    assert lag.max == pytest.approx(4000, abs=2)
    assert lag.percentile(60) == pytest.approx(400, abs=2)  # 0 x5, 400, 1300, ...


def test_closed_loop_sees_only_the_one_slow_request() -> None:
    sender = drive(spec(), stall_first)
    got = latencies(sender)
    assert len(got) == 10
    assert got[-1] == pytest.approx(5000, rel=0.01)
    assert all(g == pytest.approx(100, abs=2) for g in got[:-1])
    assert sender.rec.service.count == 0  # closed loop: latency is already the service time


def test_open_loop_without_stall_is_the_service_time() -> None:
    sender = drive(spec(rate=500.0, requests=20), lambda n: 0.0003)
    corrected = sender.rec.latency()
    assert corrected.count == 20
    assert corrected.max == pytest.approx(300, abs=2)
    assert sender.rec.lag.max == 0
    # The schedule held: the last request left at (about) its intended time, 38 ms.
    assert sender.rec.last_done == pytest.approx(0.038 + 0.0003, abs=0.0011)


def test_recorder_rule() -> None:
    rec = Recorder(start=0.0, open_loop=True)
    assert rec.record(intended=1.0, sent=1.5, done=1.6) == pytest.approx(600_000, abs=1)
    # Sent before its intended time: latency from the send, not from the (later) intention.
    assert rec.record(intended=2.0, sent=1.999, done=2.0) == pytest.approx(1_000, abs=1)
    assert rec.requests == 2
    assert rec.lag.max == pytest.approx(500_000, abs=1)
    assert sorted(rec.seconds) == [1, 2]


def test_duplicate_bodies_repeat_exactly_and_are_valid_json() -> None:
    s = Sender(spec(duplicates=0.5, payload_bytes=10), 3, loop=Sim())  # type: ignore[arg-type]
    one = s.event(7)
    assert one == s.event(7)
    doc = json.loads(one)
    assert doc == {
        "source": "bench",
        "type": "bench.event",
        "id": "run-3-7",
        "data": {"n": 7, "pad": "x" * 10},
    }
    s.acked = [1001, 1002, 1003]
    ids = [i for _ in range(200) for i in s.next_ids()]
    resent = [i for i in ids if i > 1000]
    assert 50 < len(resent) < 150
    assert s.rec.events["resent"] == len(resent)
    batch = Sender(spec(batch=3), 0, loop=Sim())  # type: ignore[arg-type]
    request = batch.payload([0, 1, 2])
    head, body = request.split(b"\r\n\r\n", 1)
    assert b"POST /ingest HTTP/1.1" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert [e["id"] for e in json.loads(body)["events"]] == ["run-0-0", "run-0-1", "run-0-2"]


def test_share_splits_connections_and_requests() -> None:
    s = spec(concurrency=10, requests=1001, processes=3)
    shares = [s.share(i) for i in range(3)]
    assert sum(c for c, _ in shares) == 10
    assert sum(n or 0 for _, n in shares) == 1001
    timed = spec(rate=1000.0, requests=None, duration=2.5, processes=2)
    assert sum(timed.share(i)[1] or 0 for i in range(2)) == 2500


class Collect:
    def __init__(self) -> None:
        self.got: list[tuple[int, bytes, bytes]] = []

    def on_response(self, conn: Conn, status: int, head: bytes, body: bytes, ids: Any) -> None:
        self.got.append((status, head, body))


def test_response_parsing_split_reads_and_chunked() -> None:
    collect = Collect()
    conn = Conn(collect)  # type: ignore[arg-type]
    conn.ids = [0]
    raw = b'HTTP/1.1 207 Multi-Status\r\nContent-Length: 12\r\n\r\n{"a":"bcde"}'
    for i in range(0, len(raw), 5):
        conn.data_received(raw[i : i + 5])
    assert collect.got == [
        (207, b"http/1.1 207 multi-status\r\ncontent-length: 12", b'{"a":"bcde"}')
    ]
    conn.ids = [1]
    conn.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    assert len(collect.got) == 1
    conn.data_received(b"2\r\nde\r\n0\r\n\r\n")
    assert collect.got[1][0] == 200 and collect.got[1][2] == b"abcde"
    assert dechunk(b"1;x=y\r\nz\r\n0\r\n\r\n") == b"z"
