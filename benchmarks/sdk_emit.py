"""Python SDK: the cost of one `Client.emit()` call while the server is up, slow or down.

    python -m benchmarks.sdk_emit [--events 100000] [--rate 10000] [--repeat 2]

up    a real `ingestd serve` on a fresh SQLite file (benchmarks.harness.Server)
slow  benchmarks/slow_receiver.py in its own process: every batch answered after --delay s
down  a loopback port nothing listens on (connection refused)

For each, two loads on a fresh Client (default options: batch 100, linger 50 ms, queue
10,000, the default rate-limited on_drop warning):
  paced  --rate events/s for --events events (sleeping between groups of 100 calls)
  burst  --events calls back to back
Each call is timed alone with perf_counter_ns (the timer pair's own cost is reported
and not subtracted); the event dict is built outside the timed region. Results: P50,
P90, P99, P99.9, max in microseconds, and the Client's counters afterwards.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

from benchmarks.harness import BENCH, Server, machine
from ingestd_client import Client


def percentiles(ns: array[int]) -> dict[str, float]:
    s = sorted(ns)
    n = len(s)

    def at(q: float) -> float:
        return s[min(n - 1, int(q * n))] / 1000

    return {
        "p50_us": at(0.50),
        "p90_us": at(0.90),
        "p99_us": at(0.99),
        "p999_us": at(0.999),
        "max_us": s[-1] / 1000,
        "mean_us": sum(s) / n / 1000,
    }


def timer_cost() -> float:
    clock = time.perf_counter_ns
    samples = array("q")
    for _ in range(100_000):
        t0 = clock()
        samples.append(clock() - t0)
    return percentiles(samples)["p50_us"]


def event(i: int) -> dict[str, Any]:
    return {
        "source": "bench",
        "type": "page.viewed",
        "actor_id": "user-48213",
        "data": {"url": "https://shop.example.com/products/12345", "i": i},
    }


def measure(url: str, events: int, rate: float) -> dict[str, Any]:
    client = Client(url)
    clock = time.perf_counter_ns
    samples = array("q")
    started = time.perf_counter()
    group = 100
    for i in range(events):
        ev = event(i)
        t0 = clock()
        client.emit(ev)
        samples.append(clock() - t0)
        if rate and i % group == group - 1:
            due = started + (i + 1) / rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
    elapsed = time.perf_counter() - started
    stats = client.stats
    client.close(timeout=1.0)
    return {
        **percentiles(samples),
        "events": events,
        "calls_per_s": events / elapsed,
        "stats_before_close": {
            "sent": stats.sent,
            "retried": stats.retried,
            "dropped": stats.dropped,
            "queued": stats.queued,
        },
    }


def measure_node(url: str, events: int, rate: float) -> dict[str, Any]:
    cmd = ["node", str(BENCH / "sdk_node.mjs"), "emit", url, str(events), f"{rate:g}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    match = re.search(r"^SDK_JSON (.*)$", out.stdout, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"node gave no result:\n{out.stdout}\n{out.stderr}")
    result: dict[str, Any] = json.loads(match.group(1))
    return result


def refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: connecting is refused


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--delay", type=float, default=0.2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--modes", default="up,slow,down")
    parser.add_argument("--lang", default="python", help="python, node or python,node")
    parser.add_argument("--json", type=Path, default=Path("/tmp/ingestd-bench") / "sdk_emit.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the drop warnings are expected here
    workdir = Path(tempfile.mkdtemp(prefix="ingestd-sdk-emit-"))
    out: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join(["benchmarks/sdk_emit.py", *sys.argv[1:]]),
        "timer_pair_us": timer_cost(),
        "runs": [],
    }
    print(f"timer pair P50 {out['timer_pair_us']:.3f} us", flush=True)
    for mode in args.modes.split(","):
        server: Any = None
        proc: subprocess.Popen[str] | None = None
        if mode == "up":
            server = Server(workdir, "up").start_now()
            url = server.url
        elif mode == "slow":
            port = refused_port()
            receiver = [sys.executable, str(BENCH / "slow_receiver.py"), "--port", str(port)]
            proc = subprocess.Popen(
                [*receiver, "--delay", str(args.delay)],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert proc.stdout is not None
            proc.stdout.readline()
            time.sleep(0.5)
            url = f"http://127.0.0.1:{port}"
        else:
            url = f"http://127.0.0.1:{refused_port()}"
        try:
            for rep, lang in ((r, x) for r in range(args.repeat) for x in args.lang.split(",")):
                for load, rate in (("paced", args.rate), ("burst", 0.0)):
                    fn = measure if lang == "python" else measure_node
                    r = fn(url, args.events, rate)
                    r |= {"lang": lang, "mode": mode, "load": load, "rate": rate}
                    r["repeat"] = rep + 1
                    out["runs"].append(r)
                    print(
                        f"{lang:6s} {mode:5s} {load:5s} #{rep + 1}: P50 {r['p50_us']:.2f} "
                        f"P90 {r['p90_us']:.2f} P99 {r['p99_us']:.2f} P99.9 {r['p999_us']:.1f} "
                        f"max {r['max_us']:.0f} us, mean {r['mean_us']:.2f} us, "
                        f"{r['calls_per_s']:,.0f} calls/s; {r['stats_before_close']}",
                        flush=True,
                    )
        finally:
            if server is not None:
                server.shutdown()
            if proc is not None:
                proc.terminate()
                proc.wait()
    args.json.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
