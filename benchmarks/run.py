"""ingestd benchmarks (`make bench`): real ingestd processes under load on 127.0.0.1.

    python -m benchmarks.run                                   # the default set
    python -m benchmarks.run --only ceiling,single,handler,batch --repeat 2
    python -m benchmarks.run --only worker --backend sqlite,postgres --worker-processes 1
    python -m benchmarks.run --only peers                      # BullMQ, Celery, ... beside ingestd
    python -m benchmarks.run --py-spy /tmp/pyspy-venv/bin/py-spy   # + profiles

One module per scenario in benchmarks/scenarios/ (its docstring says what it runs).
ceiling, single and batch share one server process, so their ratios are measured in the
same conditions. Load comes from wrk (closed loop) or `ingestd bench` (open loop); the
load generator shares the machine's cores with the server, and the 1-minute load average
is printed with every figure. The dated summary goes to benchmarks/results/, the raw
JSON and profiles to --workdir. Nothing is installed into the project's environment.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from benchmarks import backends, report
from benchmarks.harness import BENCH, Context, Load, Server, load_average, log, machine
from benchmarks.scenarios import DEFAULT, ORDER


def options(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--only", default=",".join(DEFAULT), help=f"comma-separated: {','.join(ORDER)}")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    p.add_argument("--repeat", type=int, default=1, help="measured runs (least disturbed wins)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up before each")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="wrk threads / loadgen processes")
    p.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--batch-size", type=int, default=100, help="events per batch request")
    p.add_argument("--open-rate", type=float, default=5000.0, help="openloop: requests/s")
    p.add_argument("--rss-events", type=int, default=1_000_000)
    p.add_argument("--rss-chunk", type=float, default=5.0, help="seconds per wrk run")
    p.add_argument("--rss-max-seconds", type=float, default=600.0)
    p.add_argument("--rss-warmup-fraction", type=float, default=0.2)
    p.add_argument("--rate", type=float, default=1000.0, help="e2e events/s")
    p.add_argument("--e2e-duration", type=float, default=10.0)
    p.add_argument("--e2e-backend", choices=backends.BACKENDS, default="sqlite")
    p.add_argument("--backend", default="sqlite,postgres", help="ingest/worker: backends")
    p.add_argument("--api-processes", default="1,2", help="ingest: `--workers` values")
    p.add_argument("--worker-processes", default="1", help="worker: processes")
    p.add_argument("--worker-events", type=int, default=100_000, help="worker: jobs per run")
    p.add_argument("--worker-timeout", type=float, default=120.0)
    p.add_argument("--worker-concurrency", type=int, default=256)
    p.add_argument("--worker-batch", type=int, default=256)
    p.add_argument("--peers", default="", help="peers: subset of systems (default all)")
    p.add_argument("--py-spy", default=None, help="path to a py-spy binary: profile too")
    p.add_argument("--src", type=Path, default=None, help="run the server from this copy of src/")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/ingestd-bench"))
    p.add_argument("--out", type=Path, default=BENCH / "results", help="the dated summary")
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    args.backend = [b.strip() for b in args.backend.split(",") if b.strip()]
    args.api_processes = [int(n) for n in args.api_processes.split(",")]
    args.worker_processes = [int(n) for n in args.worker_processes.split(",")]
    if set(args.backend) - set(backends.BACKENDS):
        p.error(f"--backend: one or more of {', '.join(backends.BACKENDS)}")
    unknown = set(args.only) - set(ORDER)
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = options(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.src is not None:
        Server.src_override.append(str(args.src.resolve()))
    load = Load(args.generator, args.connections, args.threads)
    results: dict[str, Any] = {
        "command": "python -m benchmarks.run "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "generator": load.name,
        "connections": args.connections,
        "duration": args.duration,
    }
    if args.src is not None:
        results["machine"]["git"] += f"; server code from {args.src}"
    log(f"machine: {results['machine']}; load: {load.name}")
    ctx = Context(args, load, results)
    order = [name for name in ORDER if name in args.only]
    try:
        for name in order:
            results[name] = report.scenario(name).run(ctx)
    finally:
        ctx.close()
    results["load_average_end"] = load_average()
    text = report.markdown(results, order)
    print("\n" + text)
    summary = report.summary_path(args.out, results, order)
    summary.write_text(text)
    raw = args.workdir / summary.with_suffix(".json").name
    raw.write_text(json.dumps(results, indent=1, default=str))
    log(f"wrote {summary} (raw figures: {raw})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
