"""e2e: 202 -> handler called, open loop at --rate events/s for --e2e-duration s.

One `ingestd serve` (fresh database of --e2e-backend) with a handler destination
(`benchmarks.handlers:record`, async) that appends "id time" to a file; the open-loop
sender (loadgen.paced) records each request's due, sent and answered times; afterwards
every `GET /ingest/{id}/status` is read.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import json
import resource
import time
from pathlib import Path
from typing import Any

from benchmarks import backends, loadgen
from benchmarks.harness import Context, Server, load_average, log, machine_busy_seconds

TITLE = "end to end, 202 -> handler, open loop"
RECORD_TOML = """\
[[destinations]]
name = "noop"
kind = "handler"
handler = "benchmarks.handlers:record"
"""


def run(ctx: Context) -> dict[str, Any]:
    args = ctx.args
    config = ctx.workdir / "e2e-handler.toml"
    config.write_text(RECORD_TOML)
    delivery_log = ctx.workdir / "e2e-deliveries.log"
    delivery_log.unlink(missing_ok=True)
    env = {"INGESTD_CONFIG": str(config), "BENCH_DELIVERY_LOG": str(delivery_log)}
    with backends.database(args.e2e_backend, ctx.workdir, "e2e") as url:
        server = Server(ctx.workdir, "e2e", env=env, database_url=url).start_now()
        log(f"server pid {server.pid} ({url}, no-op handler destination), open loop")
        try:
            return measure(ctx, server, delivery_log)
        finally:
            server.shutdown()


def measure(ctx: Context, server: Server, delivery_log: Path) -> dict[str, Any]:
    args = ctx.args
    tag = f"e{int(time.time())}"
    cpu0 = server.cpu_seconds()
    busy0 = machine_busy_seconds()
    self0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    records = arun(loadgen.paced(server.url, tag, rate=args.rate, duration=args.e2e_duration))
    send_wall = time.monotonic() - t0
    self1 = resource.getrusage(resource.RUSAGE_SELF)
    sender_cpu = 100 * (self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime)
    sender_cpu /= send_wall
    server_send_cpu = 100 * (server.cpu_seconds() - cpu0) / send_wall
    other_cpu = max(
        0.0, 100 * (machine_busy_seconds() - busy0) / send_wall - sender_cpu - server_send_cpu
    )
    accepted = [r for r in records if r.get("status") == 202]
    (ctx.workdir / "e2e-records.json").write_text(json.dumps(records))
    deadline = time.monotonic() + 30
    delivered: dict[str, float] = {}
    while time.monotonic() < deadline:
        delivered = read_deliveries(delivery_log)
        if all(r["id"] in delivered for r in accepted):
            break
        time.sleep(0.2)
    server_cpu = 100 * (server.cpu_seconds() - cpu0) / (time.monotonic() - t0)
    statuses = arun(loadgen.fetch_status(server.url, [r["id"] for r in accepted]))
    accept_latency = [r["answered"] - r["due"] for r in accepted]
    to_delivery = [delivered[r["id"]] - r["answered"] for r in accepted if r["id"] in delivered]
    due_to_delivery = [delivered[r["id"]] - r["due"] for r in accepted if r["id"] in delivered]
    completed = [
        s for s in statuses.values() if s.get("status") == "completed" and s.get("processed_at")
    ]
    answered_at = {r["id"]: r["answered"] for r in accepted}
    to_processed = [
        iso_seconds(s["processed_at"]) - answered_at[s["id"]]
        for s in completed
        if s["id"] in answered_at
    ]
    send_span = max(r["due"] for r in records) - min(r["due"] for r in records)
    e = {
        "backend": args.e2e_backend,
        "rate": args.rate,
        "achieved_rate": len(records) / send_span if send_span else 0,
        "sent": len(records),
        "accepted_202": len(accepted),
        "other_status": collections.Counter(
            r.get("status") for r in records if r.get("status") != 202
        ),
        "delivered": len(to_delivery),
        "completed": len(completed),
        "server_cpu_pct": server_cpu,
        "server_cpu_pct_while_sending": server_send_cpu,
        "sender_cpu_pct": sender_cpu,
        "other_cpu_pct": other_cpu,
        "load_average": load_average(),
        "sender_lag_us": loadgen.latency_summary_us([r["sent"] - r["due"] for r in records]),
        "accept_latency_us": loadgen.latency_summary_us(accept_latency),
        "accepted_to_delivered_us": loadgen.latency_summary_us(to_delivery),
        "due_to_delivered_us": loadgen.latency_summary_us(due_to_delivery),
        "accepted_to_processed_at_us": loadgen.latency_summary_us(to_processed),
        "command": f"python -m benchmarks.run --only e2e --rate {args.rate:g} "
        f"--e2e-duration {args.e2e_duration:g} --e2e-backend {args.e2e_backend}",
    }
    lat = e["accepted_to_delivered_us"]
    log(
        f"e2e: {e['accepted_202']}/{e['sent']} accepted, {e['delivered']} delivered, "
        f"{e['completed']} completed; 202->delivered p50 {lat['p50'] / 1000:.2f} "
        f"p95 {lat['p95'] / 1000:.2f} p99 {lat['p99'] / 1000:.2f} ms; accept p99 "
        f"{e['accept_latency_us']['p99'] / 1000:.2f} ms"
    )
    return e


def arun(coro: Any) -> Any:
    """Run a coroutine on uvloop when it is there (a lighter sender), else asyncio."""
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)


def read_deliveries(path: Path) -> dict[str, float]:
    found: dict[str, float] = {}
    if not path.exists():
        return found
    for line in path.read_text().splitlines():
        parts = line.split(" ")
        if len(parts) == 2:
            # the first delivery counts (at-least-once may repeat one)
            found.setdefault(parts[0], float(parts[1]))
    return found


def iso_seconds(value: str) -> float:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def markdown(e: dict[str, Any]) -> list[str]:
    out = [
        f"End to end ({e['backend']}), open loop at {e['rate']:g} events/s ({e['sent']:,} "
        f"events, {e['accepted_202']:,} accepted, {e['delivered']:,} delivered, "
        f"{e['completed']:,} `completed`; CPU while sending: server "
        f"{e['server_cpu_pct_while_sending']:.0f}%, sender {e['sender_cpu_pct']:.0f}%, "
        f"other {e['other_cpu_pct']:.0f}%; sender lag P99 "
        f"{e['sender_lag_us']['p99'] / 1000:.1f} ms; load {e['load_average']:.1f}):",
        "",
        "| interval | P50 ms | P95 ms | P99 ms | max ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in (
        ("accept_latency_us", "due -> 202 (open-loop request latency)"),
        ("accepted_to_delivered_us", "202 -> handler called"),
        ("due_to_delivered_us", "due -> handler called"),
        ("accepted_to_processed_at_us", "202 -> `processed_at` in status"),
    ):
        lat = e[key]
        out.append(
            f"| {label} | {lat['p50'] / 1000:.2f} | {lat['p95'] / 1000:.2f} "
            f"| {lat['p99'] / 1000:.2f} | {lat['max'] / 1000:.2f} |"
        )
    return out
