"""peers: ingestd beside the systems people pick instead, one machine, one run.

Every system gets the same load as ingestd's `single` scenario (wrk, --connections,
one new event with a unique id per request, --duration s after a warm-up) and the
systems alternate, --repeat rounds. Each is reported as a share of its own language's
no-op in the same round (a raw ASGI app on uvicorn for Python, node:http for Node), with
the server's and its store's CPU per request, and what its 202 means. Then BullMQ's
worker drains --worker-events no-op jobs (concurrency 64): the peer of the `worker`
scenario.

What it installs, only when this scenario runs (never `make test`): the npm packages of
benchmarks/peers/package.json into --workdir/peers/node, and the pip packages of
benchmarks/peers/requirements.txt into a venv at --workdir/peers/venv. Redis
(127.0.0.1:6379, db 12, flushed afterwards) and PostgreSQL (a fresh database) are the
ones the test suite uses.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import backends
from benchmarks.handlers import NOOP_TOML
from benchmarks.harness import BENCH, Context, Server, load_average, log
from ingestd.bench.process import free_port, tree_cpu_seconds

TITLE = "ingestd beside BullMQ, pg-boss, saq, Celery, Procrastinate"
PEERS = BENCH / "peers"
REDIS = "redis://127.0.0.1:6379/12"


@dataclass(frozen=True)
class System:
    name: str
    language: str  # "python" or "node": whose no-op it is compared with
    means: str  # what its 202 means
    kind: str  # how to start it (see `start`)
    store: str = ""  # "redis", "postgres" or "" (its store's CPU is counted too)


SYSTEMS = (
    System("raw ASGI no-op on uvicorn", "python", "nothing", "noop-python"),
    System("ingestd, SQLite FULL, no destination", "python", "event + key fsynced", "ingestd"),
    System(
        "ingestd, SQLite FULL, one handler destination",
        "python",
        "event + key + job fsynced",
        "ingestd-handler",
    ),
    System("ingestd, PostgreSQL", "python", "event + key WAL-flushed", "ingestd-pg", "postgres"),
    System("FastAPI + saq", "python", "in Redis's memory", "saq", "redis"),
    System("FastAPI + Celery (Redis broker)", "python", "in Redis's memory", "celery", "redis"),
    System("FastAPI + Procrastinate", "python", "job WAL-flushed", "procrastinate", "postgres"),
    System("node:http no-op", "node", "nothing", "noop-node"),
    System("fastify + BullMQ", "node", "in Redis's memory (AOF off)", "bullmq", "redis"),
    System("fastify + pg-boss", "node", "job WAL-flushed", "pgboss", "postgres"),
)


def install(workdir: Path) -> tuple[Path, Path]:
    """npm and pip packages for the peers, once per work directory."""
    node = workdir / "peers" / "node"
    wanted = (PEERS / "package.json").read_text()
    installed = node / "package.json"
    if not installed.exists() or installed.read_text() != wanted:
        node.mkdir(parents=True, exist_ok=True)
        installed.write_text(wanted)
        log("installing the Node peers (npm install) ...")
        subprocess.run(["npm", "install", "--no-audit", "--no-fund"], cwd=node, check=True)
    venv = workdir / "peers" / "venv"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if not stamp.exists() or stamp.read_text() != (PEERS / "requirements.txt").read_text():
        log("installing the Python peers (pip, a throwaway venv) ...")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", "-r", str(PEERS / "requirements.txt")]
        subprocess.run(pip, check=True)
        stamp.write_text((PEERS / "requirements.txt").read_text())
    for script in ("node_enqueue.mjs", "bullmq_drain.mjs"):
        shutil.copy(PEERS / script, node / script)  # next to node_modules
    return node, python


def wait_port(
    port: int, proc: subprocess.Popen[bytes], log_file: Path, timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited at start:\n{log_file.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"not listening after {timeout:g} s:\n{log_file.read_text()[-2000:]}")


class Peer:
    """A peer's server process (anything but ingestd) with a URL and a CPU count."""

    def __init__(self, argv: list[str], cwd: Path, log_file: Path, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log_file
        with log_file.open("ab") as out:
            self.proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=out)
        wait_port(port, self.proc, log_file)
        time.sleep(0.5)  # past "listening": connections to the store opened

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.pid)

    def shutdown(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def redis_pid() -> int | None:
    out = subprocess.run(["redis-cli", "info", "server"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("process_id:"):
            return int(line.split(":")[1])
    return None


def store_cpu(system: System, url: str) -> float:
    if system.store == "redis":
        pid = redis_pid()
        return tree_cpu_seconds(pid) if pid else 0.0
    if system.store == "postgres":
        return backends.pg_backend_cpu_seconds(url)
    return 0.0


@contextlib.contextmanager
def started(ctx: Context, system: System, node: Path, python: Path, pg: str) -> Iterator[Any]:
    work = ctx.workdir / "peers"
    port = free_port()
    queue = f"bench{int(time.time() * 1000)}"
    server: Any
    if system.kind.startswith("ingestd") or system.kind == "noop-python":
        env = {}
        if system.kind == "ingestd-handler":
            (work / "noop.toml").write_text(NOOP_TOML)
            env["INGESTD_CONFIG"] = str(work / "noop.toml")
        url = pg if system.kind == "ingestd-pg" else None
        server = Server(work, f"ingestd-{system.kind}", env=env, database_url=url).start_now()
    elif system.kind == "noop-node":
        argv = ["node", str(BENCH / "trivial_server.mjs"), str(port)]
        server = Peer(argv, node, work / "noop-node.log", port)
    elif system.kind in ("bullmq", "pgboss"):
        store = REDIS if system.kind == "bullmq" else pg
        argv = ["node", "node_enqueue.mjs", system.kind, str(port), store, queue]
        server = Peer(argv, node, work / f"{system.kind}.log", port)
    else:
        store = pg if system.kind == "procrastinate" else REDIS
        argv = [str(python), str(PEERS / "python_enqueue.py"), system.kind, str(port), store, queue]
        server = Peer(argv, work, work / f"{system.kind}.log", port)
    try:
        yield server
    finally:
        server.shutdown()


def run(ctx: Context) -> dict[str, Any]:
    args = ctx.args
    (ctx.workdir / "peers").mkdir(parents=True, exist_ok=True)
    node, python = install(ctx.workdir)
    wanted = [s for s in SYSTEMS if not args.peers or s.kind in args.peers.split(",")]
    rounds: list[dict[str, Any]] = []
    with backends.database("postgres", ctx.workdir, "peers") as pg:
        for attempt in range(args.repeat):
            row: dict[str, Any] = {}
            for system in wanted:
                # every system on an empty database: drop what the last one stored
                reset_pg(pg)
                try:
                    with started(ctx, system, node, python, pg) as server:
                        path = "/_bench/noop" if system.kind == "noop-python" else "/ingest"
                        mode = "noop" if system.kind.startswith("noop") else "single"
                        if system.kind == "noop-node":
                            path = "/"
                        ctx.load.run(server, path, mode, f"pw{attempt}{system.kind}", args.warmup)
                        s0 = store_cpu(system, pg)
                        r = ctx.load.run(
                            server, path, mode, f"pm{attempt}{system.kind}", args.duration
                        )
                        r["store_cpu_us_per_request"] = (
                            1e6 * (store_cpu(system, pg) - s0) / max(1, r["requests"])
                        )
                except (RuntimeError, subprocess.SubprocessError) as exc:
                    log(f"peers: {system.name}: {exc}")
                    row[system.name] = {"error": str(exc)[-500:]}
                    continue
                row[system.name] = r
                log(
                    f"peers #{attempt + 1} {system.name}: {r['rps']:,.0f} req/s, P99 "
                    f"{r['latency_us']['p99'] / 1000:.1f} ms, non-2xx {r['non2xx']}, server "
                    f"{r['server_cpu_us_per_event']:.0f} µs + store "
                    f"{r['store_cpu_us_per_request']:.0f} µs per request, load "
                    f"{r['load_average']:.1f}"
                )
            rounds.append(row)
        drain = bullmq_drain(node, args.worker_events)
    subprocess.run(["redis-cli", "-n", "12", "flushdb"], capture_output=True, check=False)
    return {
        "systems": [s.__dict__ for s in wanted],
        "rounds": rounds,
        "bullmq_drain": drain,
        "load_average": load_average(),
    }


def reset_pg(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
        for schema in ("pgboss",):
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def bullmq_drain(node: Path, count: int) -> dict[str, Any]:
    queue = f"drain{int(time.time())}"
    log(f"peers: BullMQ worker draining {count:,} no-op jobs (concurrency 64) ...")
    out = subprocess.run(
        ["node", "bullmq_drain.mjs", REDIS, queue, str(count), "64"],
        cwd=node,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    try:
        result = dict(json.loads(line))
    except ValueError:
        return {"error": (out.stdout + out.stderr)[-500:]}
    result["load_average"] = load_average()
    log(f"peers: BullMQ drained {result['jobs']:,} jobs at {result['jobs_per_s']:,.0f} jobs/s")
    return result


def markdown(r: dict[str, Any]) -> list[str]:
    systems = {s["name"]: s for s in r["systems"]}
    out = [
        "| system (one server process) | what its 202 means | req/s (each round) | P99 ms "
        "| share of its language's no-op | server CPU µs/request | store CPU µs/request |",
        "|---|---|---|---|---|---:|---:|",
    ]
    for name, system in systems.items():
        figures = [row.get(name, {}) for row in r["rounds"]]
        ok = [f for f in figures if "rps" in f]
        if not ok:
            error = next((f.get("error", "") for f in figures), "")
            out.append(f"| {name} | {system['means']} | failed: {error[:120]} | | | | |")
            continue
        noop = "raw ASGI no-op on uvicorn" if system["language"] == "python" else "node:http no-op"
        shares = [
            f["rps"] / row[noop]["rps"]
            for f, row in zip(figures, r["rounds"], strict=True)
            if "rps" in f and "rps" in row.get(noop, {})
        ]
        out.append(
            f"| {name} | {system['means']} | "
            + " · ".join(f"{f['rps']:,.0f}" for f in ok)
            + " | "
            + " · ".join(f"{f['latency_us']['p99'] / 1000:.1f}" for f in ok)
            + " | "
            + " · ".join(f"{s:.2f}" for s in shares)
            + f" | {sum(f['server_cpu_us_per_event'] for f in ok) / len(ok):.0f}"
            + f" | {sum(f['store_cpu_us_per_request'] for f in ok) / len(ok):.0f} |"
        )
    d = r["bullmq_drain"]
    if "jobs_per_s" in d:
        out += [
            "",
            f"BullMQ worker, concurrency 64, {d['jobs']:,} no-op jobs queued first: "
            f"**{d['jobs_per_s']:,.0f} jobs/s** (load {d['load_average']:.1f}).",
        ]
    return out
