"""Issue 4 scenarios for run.py: SQLite beside PostgreSQL in the same run.

  ingest  `ingestd api [--workers N]` (no destination, so ingest only) for each backend
          and each N in --api-processes: single events, then 100-event batches (wrk)
  worker  jobs/s one or more `ingestd worker` processes claim and complete with a no-op
          handler destination: --worker-events events are loaded first (API stopped),
          then the workers start and the succeeded count is sampled until it is complete

Each (backend, processes) pair gets a fresh database (a new SQLite file or a new
PostgreSQL database made with CREATE DATABASE, dropped afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import backends

BENCH = Path(__file__).resolve().parent
NOOP_TOML = """\
[[destinations]]
name = "noop"
kind = "handler"
handler = "bench_handler:noop"
max_in_flight = 10000
"""

Measure = Callable[..., dict[str, Any]]


def scenario_ingest(
    args: argparse.Namespace,
    load: Any,
    results: dict[str, Any],
    server_cls: Any,
    measure: Measure,
    log: Callable[[str], None],
) -> None:
    out: dict[str, Any] = {}
    for processes in args.api_processes:
        for backend in args.backend:
            key = f"{backend} x{processes}"
            name = f"ingest-{backend}-{processes}"
            with backends.database(backend, args.workdir, name) as url:
                server = server_cls(
                    args.workdir, name, database_url=url, command="api", workers=processes
                )
                try:
                    server.start()
                except RuntimeError as exc:
                    log(f"{key}: {exc}")
                    out[key] = {"error": str(exc)}
                    continue
                log(f"{key}: `ingestd api --workers {processes}` pid {server.pid} on {url}")
                stamp = int(time.time())
                row: dict[str, Any] = {"database": url.split("/")[-1]}
                try:
                    for mode, path in (("single", "/ingest"), ("batch", "/ingest/batch")):
                        tag = f"{mode[0]}{backend[0]}{processes}{stamp}"
                        load.run(server, path, mode, "w" + tag, args.warmup)
                        pg0, t0 = backends.pg_backend_cpu_seconds(url), time.monotonic()
                        row[mode] = measure(args, load, server, path, mode, tag, f"{key} {mode}")
                        row[mode]["pg_cpu_pct"] = (
                            100
                            * (backends.pg_backend_cpu_seconds(url) - pg0)
                            / (time.monotonic() - t0)
                        )
                        row[mode]["command"] = (
                            f"INGESTD_DATABASE_URL={backend} ingestd api --workers {processes}; "
                            + row[mode]["command"]
                        )
                    row["stored_events"] = server.stored_events()
                    row["log_tail"] = tail(server.dir / "server.log")
                finally:
                    server.stop()
                out[key] = row
    results["ingest_matrix"] = out


def tail(path: Path, lines: int = 5) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def preload(url: str, count: int, tag: str, size: int = 1000) -> None:
    for start in range(0, count, size):
        events = [
            {
                "source": "bench",
                "type": "page.viewed",
                "id": f"{tag}-{i}",
                "data": {"url": "https://shop.example.com/p/12345", "i": i},
            }
            for i in range(start, min(count, start + size))
        ]
        request = urllib.request.Request(
            url + "/ingest/batch",
            data=json.dumps({"events": events}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
            if body.get("accepted") != len(events):  # a 207 with per-item results
                raise RuntimeError(f"preload: {response.status} {str(body)[:300]}")


def scenario_worker(
    args: argparse.Namespace,
    results: dict[str, Any],
    server_cls: Any,
    log: Callable[[str], None],
    busy_seconds: Callable[[], float],
) -> None:
    config = args.workdir / "worker-noop.toml"
    config.write_text(NOOP_TOML)
    out: dict[str, Any] = {}
    exe = str(BENCH.parent / ".venv" / "bin" / "ingestd")
    for workers in args.worker_processes:
        for backend in args.backend:
            for run in range(args.repeat):
                key = f"{backend} x{workers} #{run + 1}"
                name = f"worker-{backend}-{workers}-{run}"
                with backends.database(backend, args.workdir, name) as url:
                    env = {"INGESTD_CONFIG": str(config)}
                    api = server_cls(args.workdir, name, database_url=url, command="api", env=env)
                    api.start()
                    try:
                        t0 = time.monotonic()
                        preload(api.url, args.worker_events, f"{name}-{int(time.time())}")
                        load_s = time.monotonic() - t0
                    finally:
                        api.stop()
                    out[key] = drain(args, url, api.env, exe, workers, busy_seconds)
                    out[key]["preload_s"] = load_s
                    out[key]["backend"] = backend
                    out[key]["workers"] = workers
                    r = out[key]
                    log(
                        f"worker {key}: {r['completed']:,} jobs in {r['seconds']:.2f} s = "
                        f"{r['jobs_per_s']:,.0f} jobs/s (10-90%: {r['steady_jobs_per_s']:,.0f}/s), "
                        f"worker CPU {r['worker_cpu_pct']:.0f}%, "
                        f"other CPU {r['other_cpu_pct']:.0f}%, CPU per job: worker "
                        f"{r.get('worker_cpu_us_per_job', 0):.0f} µs + PG "
                        f"{r.get('pg_cpu_us_per_job', 0):.0f} µs"
                    )
    results["worker"] = out


def drain(
    args: argparse.Namespace,
    url: str,
    env: dict[str, str],
    exe: str,
    workers: int,
    busy_seconds: Callable[[], float],
) -> dict[str, Any]:
    total = int(backends.scalar(url, "SELECT count(*) FROM deliveries"))
    done_q = "SELECT count(*) FROM deliveries WHERE state = 'succeeded'"
    env = {**env, "INGESTD_LOG_LEVEL": "warning", **worker_env(args)}
    busy0 = busy_seconds()
    t0 = time.monotonic()
    procs = [
        backends.Proc([exe, "worker"], env, args.workdir / f"worker-{os.getpid()}-{n}.log")
        for n in range(workers)
    ]
    spy: subprocess.Popen[bytes] | None = None
    backend = "sqlite" if url.startswith("sqlite") else "postgres"
    raw = args.out / f"profile-worker-{backend}-x{workers}.folded"
    samples: list[tuple[float, int]] = []
    cpu = {p.pid: 0.0 for p in procs}
    deadline = t0 + args.worker_timeout
    # CPU (worker processes, PostgreSQL backends) at the first sample with completed jobs,
    # so start-up is not counted in the CPU cost per job
    marks: tuple[int, float, float] | None = None
    try:
        done = 0
        while done < total and time.monotonic() < deadline:
            time.sleep(0.25)
            for p in procs:
                cpu[p.pid] = max(cpu[p.pid], p.cpu_seconds())
            done = int(backends.scalar(url, done_q))
            samples.append((time.monotonic() - t0, done))
            if marks is None and done:
                marks = (done, sum(cpu.values()), backends.pg_backend_cpu_seconds(url))
                if getattr(args, "py_spy", None):  # the first worker, once it is working
                    spy_args = ["--rate", "250", "--format", "raw", "--threads", "--nonblocking"]
                    spy = subprocess.Popen(
                        [
                            args.py_spy,
                            "record",
                            "--pid",
                            str(procs[0].pid),
                            "--duration",
                            "5",
                            *spy_args,
                            "-o",
                            str(raw),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
        wall = time.monotonic() - t0
        busy = busy_seconds() - busy0
        pg_cpu = backends.pg_backend_cpu_seconds(url)
    finally:
        if spy is not None:
            spy.wait(timeout=60)
            args.summarize(raw, raw.with_suffix(".txt"))
        for p in procs:
            p.stop()
    first = next((t for t, d in samples if d > 0), wall)
    lo = next((t for t, d in samples if d >= 0.1 * total), wall)
    hi = next((t for t, d in samples if d >= 0.9 * total), wall)
    worker_cpu = sum(cpu.values())
    # the last sample that reached `done`: the end of the work (sampling adds <= 0.25 s)
    last = next((t for t, d in samples if d >= done), wall)
    per_job: dict[str, float] = {}
    if marks is not None and done > marks[0]:
        n = done - marks[0]
        per_job = {
            "worker_cpu_us_per_job": 1e6 * (worker_cpu - marks[1]) / n,
            "pg_cpu_us_per_job": 1e6 * (pg_cpu - marks[2]) / n,
        }
        # nothing else running: each worker process can use one core, and the workers and
        # the PostgreSQL backends together can use all of the machine's cores
        cost = per_job["worker_cpu_us_per_job"] + per_job["pg_cpu_us_per_job"]
        cores = os.cpu_count() or 1
        per_job["ceiling_jobs_per_s_idle_machine"] = min(
            min(workers, cores) * 1e6 / per_job["worker_cpu_us_per_job"], cores * 1e6 / cost
        )
    return {
        **per_job,
        "jobs": total,
        "completed": done,
        "seconds_with_startup": wall,
        "seconds": last - first,
        "jobs_per_s": done / (last - first) if last > first else 0.0,
        "steady_jobs_per_s": 0.8 * total / (hi - lo) if hi > lo else 0.0,
        "worker_cpu_pct": 100 * worker_cpu / wall,
        "pg_cpu_pct": 100 * pg_cpu / wall,
        "other_cpu_pct": max(0.0, 100 * (busy - worker_cpu - pg_cpu) / wall),
        "samples": samples,
    }


def worker_env(args: argparse.Namespace) -> dict[str, str]:
    return {
        "INGESTD_WORKER_CONCURRENCY": str(args.worker_concurrency),
        "INGESTD_WORKER_BATCH": str(args.worker_batch),
    }


def markdown(results: dict[str, Any]) -> list[str]:
    out: list[str] = []
    matrix = results.get("ingest_matrix")
    if matrix:
        out += [
            "",
            "Ingest, `ingestd api [--workers N]`, no destination (events stored, no jobs):",
            "",
            "| backend x API processes | load | req/s | events/s | P50 ms | P95 ms | P99 ms "
            "| non-2xx | errors | server CPU | PG backends CPU | other CPU (incl. PG) "
            "| all runs, events/s |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for key, row in matrix.items():
            if "error" in row:
                out.append(f"| {key} | failed to start: {row['error']} |" + " |" * 11)
                continue
            for mode in ("single", "batch"):
                r = row[mode]
                lat = r["latency_us"]
                errors = sum(r["errors"].values()) - r["errors"]["status"]
                runs = ", ".join(f"{x['events_per_s']:,.0f}" for x in r.get("runs", []))
                out.append(
                    f"| {key} | {mode} | {r['rps']:,.0f} | {r['events_per_s']:,.0f} "
                    f"| {lat['p50'] / 1000:.2f} | {lat['p95'] / 1000:.2f} "
                    f"| {lat['p99'] / 1000:.2f} | {r['non2xx']} | {errors} "
                    f"| {r['server_cpu_pct']:.0f}% | {r.get('pg_cpu_pct', 0):.0f}% "
                    f"| {r['other_cpu_pct']:.0f}% | {runs} |"
                )
    worker = results.get("worker")
    if worker:
        out += [
            "",
            "Worker, no-op handler destination (`bench_handler:noop`), jobs loaded first:",
            "",
            "| backend x worker processes | jobs | seconds | jobs/s | jobs/s 10-90% "
            "| worker CPU | PG backends CPU | other CPU | CPU µs/job worker + PG "
            "| ceiling, idle machine |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for key, r in worker.items():
            out.append(
                f"| {key} | {r['completed']:,}/{r['jobs']:,} | {r['seconds']:.2f} "
                f"| {r['jobs_per_s']:,.0f} | {r['steady_jobs_per_s']:,.0f} "
                f"| {r['worker_cpu_pct']:.0f}% | {r['pg_cpu_pct']:.0f}% "
                f"| {r['other_cpu_pct']:.0f}% "
                f"| {r.get('worker_cpu_us_per_job', 0):.0f} + {r.get('pg_cpu_us_per_job', 0):.0f} "
                f"| {r.get('ceiling_jobs_per_s_idle_machine', 0):,.0f} |"
            )
    return out
