"""How fast `ingestd bench` itself can send: its own overhead, against fast targets.

    python -m benchmarks.bench_overhead [--duration 10] [--repeat 2]

Targets (both on 127.0.0.1, sharing the machine's cores with the generator):
  trivial  benchmarks/trivial_server.mjs (node:http, reads the body, answers 202)
  noop     `ingestd serve` with INGESTD_BENCH_NOOP=true, POST /_bench/noop (raw ASGI no-op)

For each target: wrk (C, the reference generator) at 64 connections, then `ingestd bench`
closed loop at 64 connections with 1 and 2 sender processes, then open loop at
--rate 20000. What `ingestd bench` reports about itself (sender CPU, CPU µs per request,
"ceiling on idle cores", its bottleneck verdict) is kept with each run. Raw JSON:
/tmp/ingestd-bench/bench_overhead.json (--json).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import BENCH, LUA, Server, machine, machine_busy_seconds
from ingestd.bench.process import free_port, ingestd_command

EXE = ingestd_command()[0]


def wrk(url: str, duration: float) -> dict[str, Any]:
    cmd = ["wrk", "-t2", "-c64", f"-d{duration:g}s", "--latency", "-s", str(LUA), url]
    cmd += ["--", "single", f"ov{int(time.time())}"]
    busy0, t0 = machine_busy_seconds(), time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    wall = time.monotonic() - t0
    match = re.search(r"^WRK_JSON (.*)$", out.stdout, re.MULTILINE)
    if match is None:
        raise RuntimeError(out.stdout + out.stderr)
    r: dict[str, Any] = json.loads(match.group(1))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    r["machine_busy_pct"] = 100 * (machine_busy_seconds() - busy0) / wall
    r["command"] = " ".join(["wrk", *cmd[1:]])
    return r


def bench(url: str, path: str, extra: list[str], duration: float, out: Path) -> dict[str, Any]:
    cmd = [EXE, "bench", "--url", url, "--path", path, "--duration", f"{duration:g}"]
    cmd += [*extra, "--json", str(out), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 120)
    if not out.exists():
        raise RuntimeError(done.stdout + done.stderr)
    r: dict[str, Any] = json.loads(out.read_text())
    return {
        "command": "ingestd " + " ".join(cmd[1:-3]),
        "throughput_rps": r["throughput_rps"],
        "latency_us": {k: r["latency_us"].get(k) for k in ("p50", "p99", "max")},
        "errors": r.get("errors"),
        "processes": r.get("processes"),
        "generator": r.get("generator"),
        "report": done.stdout[-1500:],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--rate", type=float, default=20_000)
    parser.add_argument("--targets", default="trivial,noop")
    parser.add_argument(
        "--json", type=Path, default=Path("/tmp/ingestd-bench") / "bench_overhead.json"
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="ingestd-bench-overhead-"))
    runs: list[dict[str, Any]] = []
    for target in args.targets.split(","):
        server: Any = None
        node: subprocess.Popen[str] | None = None
        if target == "trivial":
            port = free_port()
            node = subprocess.Popen(
                ["node", str(BENCH / "trivial_server.mjs"), str(port)],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert node.stdout is not None
            node.stdout.readline()
            url, path = f"http://127.0.0.1:{port}", "/ingest"
        else:
            server = Server(workdir, "noop").start_now()
            url, path = server.url, "/_bench/noop"
        try:
            for rep in range(1, args.repeat + 1):
                loads: list[tuple[str, list[str]]] = [
                    (
                        "bench closed 64 conn, 1 process",
                        ["--concurrency", "64", "--processes", "1"],
                    ),
                    (
                        "bench closed 64 conn, 2 processes",
                        ["--concurrency", "64", "--processes", "2"],
                    ),
                    (f"bench open {args.rate:g}/s", ["--rate", f"{args.rate:g}"]),
                ]
                r = wrk(url + path, args.duration) | {"target": target, "load": "wrk", "rep": rep}
                runs.append(r)
                print(f"{target} wrk #{rep}: {r['rps']:,.0f} req/s", flush=True)
                for n, (label, extra) in enumerate(loads):
                    out = workdir / f"{target}-{rep}-{n}.json"
                    r = bench(url, path, extra, args.duration, out)
                    r |= {"target": target, "load": label, "rep": rep}
                    runs.append(r)
                    gen = r["generator"] or {}
                    print(
                        f"{target} {label} #{rep}: {r['throughput_rps']:,.0f} req/s, sender CPU "
                        f"{gen.get('cpu_percent')}, {gen.get('cpu_us_per_request')} µs CPU/request,"
                        f" ceiling on idle cores {gen.get('ceiling_rps_estimate')}, machine busy "
                        f"{gen.get('machine_busy_percent')}% -- {gen.get('verdict')}",
                        flush=True,
                    )
        finally:
            if node is not None:
                node.terminate()
                node.wait()
            if server is not None:
                server.shutdown()
    args.json.write_text(json.dumps({"machine": machine(), "runs": runs}, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
