"""openloop: single events at a fixed --open-rate (default 5,000 req/s) for --duration s,
sent by `ingestd bench --rate` (its own processes; latency counted from each request's
due time, so a stall shows as latency: coordinated omission corrected). A fresh server,
SQLite FULL, no destination."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from benchmarks.harness import Context, Server, load_average, log, machine_busy_seconds

TITLE = "open loop, single events at a fixed rate (`ingestd bench --rate`)"


def bench(url: str, out: Any, *options: str) -> tuple[dict[str, Any], list[str]]:
    argv = [sys.executable, "-m", "ingestd.cli", "bench", "--url", url, *options]
    argv += ["--json", str(out), "--quiet"]
    subprocess.run(argv, check=True, capture_output=True, timeout=600)
    return json.loads(out.read_text()), argv


def run(ctx: Context) -> dict[str, Any]:
    args = ctx.args
    server = Server(ctx.workdir, "openloop").start_now()
    log(f"server pid {server.pid} (SQLite FULL), open loop at {args.open_rate:g} req/s")
    try:
        bench(server.url, ctx.workdir / "openloop-warm.json", "--rate", "1000", "--duration", "2")
        cpu0, busy0, t0 = server.cpu_seconds(), machine_busy_seconds(), time.monotonic()
        result, argv = bench(
            server.url,
            ctx.workdir / "openloop.json",
            "--rate",
            f"{args.open_rate:g}",
            "--duration",
            f"{args.duration:g}",
        )
        wall = time.monotonic() - t0
        cpu = server.cpu_seconds() - cpu0
    finally:
        server.shutdown()
    accepted = result["events"].get("accepted", 0)
    summary = {
        "rate": args.open_rate,
        "throughput_rps": result["throughput_rps"],
        "requests": result["requests"],
        "accepted": accepted,
        "statuses": result["statuses"],
        "latency_us": result["latency_us"],
        "service_time_us": result["service_time_us"],
        "schedule_lag_us": result["schedule_lag_us"],
        "server_cpu_pct": 100 * cpu / wall,
        "server_cpu_us_per_event": 1e6 * cpu / max(1, accepted),
        "machine_busy_pct": 100 * (machine_busy_seconds() - busy0) / wall,
        "load_average": load_average(),
        "command": "ingestd " + " ".join(argv[argv.index("bench") :]),
    }
    lat = summary["latency_us"]
    log(
        f"openloop {summary['throughput_rps']:,.0f} of {args.open_rate:g} req/s: from due P50 "
        f"{lat['p50'] / 1000:.2f} P99 {lat['p99'] / 1000:.2f} ms, server CPU "
        f"{summary['server_cpu_pct']:.0f}% ({summary['server_cpu_us_per_event']:.0f} µs/event), "
        f"load {summary['load_average']:.1f}"
    )
    return summary


def markdown(r: dict[str, Any]) -> list[str]:
    lat, svc = r["latency_us"], r["service_time_us"] or {}
    return [
        "| target rate | achieved req/s | from due P50 ms | P99 ms | P99.9 ms | max ms "
        "| service P99 ms | statuses | server CPU | CPU µs/event | machine busy | load |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
        f"| {r['rate']:,.0f} | {r['throughput_rps']:,.0f} | {lat['p50'] / 1000:.2f} "
        f"| {lat['p99'] / 1000:.2f} | {lat['p99_9'] / 1000:.2f} | {lat['max'] / 1000:.2f} "
        f"| {svc.get('p99', 0) / 1000:.2f} | {r['statuses']} | {r['server_cpu_pct']:.0f}% "
        f"| {r['server_cpu_us_per_event']:.1f} | {r['machine_busy_pct']:.0f}% "
        f"| {r['load_average']:.1f} |",
        "",
        f"`{r['command']}`",
    ]
