"""ingest: SQLite beside PostgreSQL in the same run, 1 and more API processes.

For each backend in --backend and each N in --api-processes: `ingestd api --workers N`
(no destination, so ingest only) on a fresh database (a new SQLite file, or a new
PostgreSQL database made with CREATE DATABASE and dropped afterwards); single events,
then batches of --batch-size (wrk). PostgreSQL's backends' CPU is counted too.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import backends
from benchmarks.harness import Context, Server, log

TITLE = "ingest, SQLite beside PostgreSQL, 1..N API processes"


def run(ctx: Context) -> dict[str, Any]:
    args = ctx.args
    out: dict[str, Any] = {}
    for processes in args.api_processes:
        for backend in args.backend:
            key = f"{backend} x{processes}"
            name = f"ingest-{backend}-{processes}"
            with backends.database(backend, ctx.workdir, name) as url:
                server = Server(
                    ctx.workdir, name, database_url=url, command="api", workers=processes
                )
                try:
                    server.start_now()
                except RuntimeError as exc:
                    log(f"{key}: {exc}")
                    out[key] = {"error": str(exc)}
                    continue
                log(f"{key}: `ingestd api --workers {processes}` pid {server.pid} on {url}")
                row: dict[str, Any] = {"database": url.split("/")[-1]}
                try:
                    for mode, path in (("single", "/ingest"), ("batch", "/ingest/batch")):
                        pg0, t0 = backends.pg_backend_cpu_seconds(url), time.monotonic()
                        r = ctx.measure(server, path, mode, f"{key} {mode}", args.batch_size)
                        r["pg_cpu_pct"] = (
                            100
                            * (backends.pg_backend_cpu_seconds(url) - pg0)
                            / (time.monotonic() - t0)
                        )
                        r["command"] = (
                            f"INGESTD_DATABASE_URL={backend} ingestd api --workers {processes}; "
                            + r["command"]
                        )
                        row[mode] = r
                    row["stored_events"] = server.stored_events()
                    row["log_tail"] = server.tail(600).splitlines()
                finally:
                    server.shutdown()
                out[key] = row
    return out


def markdown(matrix: dict[str, Any]) -> list[str]:
    out = [
        "Ingest, `ingestd api [--workers N]`, no destination (events stored, no jobs):",
        "",
        "| backend x API processes | load | req/s | events/s | P50 ms | P95 ms | P99 ms "
        "| non-2xx | server CPU | CPU µs/event | PG backends CPU | other CPU (incl. PG) "
        "| all runs, events/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for key, row in matrix.items():
        if "error" in row:
            out.append(f"| {key} | failed to start: {row['error'][:200]} |" + " |" * 11)
            continue
        for mode in ("single", "batch"):
            r = row[mode]
            lat = r["latency_us"]
            runs = ", ".join(f"{x['events_per_s']:,.0f}" for x in r.get("runs", []))
            out.append(
                f"| {key} | {mode} | {r['rps']:,.0f} | {r['events_per_s']:,.0f} "
                f"| {lat['p50'] / 1000:.2f} | {lat['p95'] / 1000:.2f} "
                f"| {lat['p99'] / 1000:.2f} | {r['non2xx']} "
                f"| {r['server_cpu_pct']:.0f}% | {r['server_cpu_us_per_event']:.1f} "
                f"| {r.get('pg_cpu_pct', 0):.0f}% | {r['other_cpu_pct']:.0f}% | {runs} |"
            )
    return out
