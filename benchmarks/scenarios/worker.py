"""worker: how fast worker processes drain jobs to a no-op handler destination.

For each backend and each N in --worker-processes, --repeat times: a fresh database;
`ingestd api` loads --worker-events events in 1,000-event batches with one destination
(`benchmarks.handlers:noop`, async, returns at once), then stops; N `ingestd worker`
processes start and the count of succeeded deliveries is read every 0.25 s until it is
complete. jobs/s counts between the first and the last completion (start-up excluded);
CPU per job counts the workers and, on PostgreSQL, the database's backends.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from typing import Any

from benchmarks import backends, profiling
from benchmarks.handlers import NOOP_TOML
from benchmarks.harness import Context, Server, load_average, log, machine_busy_seconds

TITLE = "worker drain, no-op handler destination"


def run(ctx: Context) -> dict[str, Any]:
    args = ctx.args
    config = ctx.workdir / "worker-noop.toml"
    config.write_text(NOOP_TOML)
    out: dict[str, Any] = {}
    for workers in args.worker_processes:
        for backend in args.backend:
            for attempt in range(args.repeat):
                key = f"{backend} x{workers} #{attempt + 1}"
                name = f"worker-{backend}-{workers}-{attempt}"
                env = {"INGESTD_CONFIG": str(config)}
                with backends.database(backend, ctx.workdir, name) as url:
                    api = Server(ctx.workdir, name, database_url=url, command="api", env=env)
                    api.start_now()
                    try:
                        t0 = time.monotonic()
                        preload(api.url, args.worker_events, f"{name}-{int(time.time())}")
                        load_s = time.monotonic() - t0
                    finally:
                        api.shutdown()
                    r = drain(ctx, name, url, env, workers)
                r.update(preload_s=load_s, backend=backend, workers=workers)
                out[key] = r
                log(
                    f"worker {key}: {r['completed']:,} jobs in {r['seconds']:.2f} s = "
                    f"{r['jobs_per_s']:,.0f} jobs/s, worker CPU {r['worker_cpu_pct']:.0f}%, "
                    f"other CPU {r['other_cpu_pct']:.0f}%, CPU per job: worker "
                    f"{r.get('worker_cpu_us_per_job', 0):.0f} µs + PG "
                    f"{r.get('pg_cpu_us_per_job', 0):.0f} µs, load {r['load_average']:.1f}"
                )
    return out


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


def drain(ctx: Context, name: str, url: str, env: dict[str, str], workers: int) -> dict[str, Any]:
    args = ctx.args
    total = int(backends.scalar(url, "SELECT count(*) FROM deliveries"))
    done_q = "SELECT count(*) FROM deliveries WHERE state = 'succeeded'"
    env = {
        **env,
        "INGESTD_WORKER_CONCURRENCY": str(args.worker_concurrency),
        "INGESTD_WORKER_BATCH": str(args.worker_batch),
    }
    busy0 = machine_busy_seconds()
    t0 = time.monotonic()
    procs = [
        Server(ctx.workdir, f"{name}-w{n}", database_url=url, command="worker", env=env)
        for n in range(workers)
    ]
    for p in procs:
        p.launch()
    spy = None
    backend = "sqlite" if url.startswith("sqlite") else "postgres"
    raw = ctx.workdir / "profiles" / f"profile-worker-{backend}-x{workers}.folded"
    samples: list[tuple[float, int]] = []
    cpu = {p.pid: 0.0 for p in procs}
    deadline = t0 + args.worker_timeout
    # CPU at the first sample with completed jobs, so start-up is not in the cost per job
    marks: tuple[int, float, float] | None = None
    profile = None
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
                if args.py_spy:  # the first worker, once it is working
                    spy = profiling.record(args.py_spy, procs[0].pid, raw, 3)
        wall = time.monotonic() - t0
        busy = machine_busy_seconds() - busy0
        pg_cpu = backends.pg_backend_cpu_seconds(url)
    finally:
        if spy is not None:
            spy.wait(timeout=60)
            profile = profiling.summarize(raw, raw.with_suffix(".txt"))
        for p in procs:
            p.shutdown()
    first = next((t for t, d in samples if d > 0), wall)
    worker_cpu = sum(cpu.values())
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
        "worker_cpu_pct": 100 * worker_cpu / wall,
        "pg_cpu_pct": 100 * pg_cpu / wall,
        "other_cpu_pct": max(0.0, 100 * (busy - worker_cpu - pg_cpu) / wall),
        "load_average": load_average(),
        "profile": profile,
        "samples": samples,
    }


def markdown(worker: dict[str, Any]) -> list[str]:
    out = [
        "Worker, no-op handler destination (`benchmarks.handlers:noop`), jobs loaded first:",
        "",
        "| backend x worker processes | jobs | seconds | jobs/s | worker CPU | PG backends CPU "
        "| other CPU | CPU µs/job worker + PG | ceiling, idle machine | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, r in worker.items():
        out.append(
            f"| {key} | {r['completed']:,}/{r['jobs']:,} | {r['seconds']:.2f} "
            f"| {r['jobs_per_s']:,.0f} | {r['worker_cpu_pct']:.0f}% | {r['pg_cpu_pct']:.0f}% "
            f"| {r['other_cpu_pct']:.0f}% "
            f"| {r.get('worker_cpu_us_per_job', 0):.0f} + {r.get('pg_cpu_us_per_job', 0):.0f} "
            f"| {r.get('ceiling_jobs_per_s_idle_machine', 0):,.0f} | {r['load_average']:.1f} |"
        )
    return out
