"""What every scenario shares: the server under test, closed-loop load, CPU accounting.

`Server` is ingestd.bench.process.IngestdProcess (the harness the tests use too) with
the benchmark's environment: its own directory and database, the no-op endpoint on,
warnings only, and `benchmarks/handlers.py` importable for handler destinations.
`Load` runs wrk (or the Python fallback) and turns its output into one result dict
with the CPU used by the server, the load generator and everything else meanwhile.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import backends, loadgen, profiling
from ingestd.bench.process import IngestdProcess

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
LUA = BENCH / "wrk" / "ingest.lua"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def load_average() -> float:
    """The 1-minute load average: printed with every figure (the machine is shared)."""
    return os.getloadavg()[0]


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat), to spot other load."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def machine() -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "git": head + (" + uncommitted changes in src/" if dirty else ""),
        "load_average": load_average(),
    }


class Server(IngestdProcess):
    """One `ingestd serve` (or `api [--workers N]`, `worker`) for a benchmark, in its own
    directory, by default with its own SQLite file; `database_url` points it elsewhere."""

    src_override: list[str] = []  # run.py --src: a frozen copy of src/

    def __init__(
        self,
        workdir: Path,
        name: str,
        *,
        synchronous: str = "FULL",
        env: dict[str, str] | None = None,
        database_url: str | None = None,
        command: str = "serve",
        workers: int = 1,
        fresh: bool = True,
    ) -> None:
        self.dir = workdir / name
        if fresh:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.db = self.dir / "ingestd.db"
        self.database_url = database_url or f"sqlite:///{self.db}"
        super().__init__(
            command,
            log=self.dir / f"{command}.log",
            args=["--workers", str(workers)] if workers > 1 else [],
            env={
                "INGESTD_DATABASE_URL": self.database_url,
                "INGESTD_SQLITE_SYNCHRONOUS": synchronous,
                "INGESTD_BENCH_NOOP": "true",
                "INGESTD_LOG_LEVEL": "warning",
                # the repository root for benchmarks.handlers; --src before the editable install
                "PYTHONPATH": os.pathsep.join([*self.src_override, str(ROOT)]),
                **(env or {}),
            },
        )

    def start_now(self, timeout: float = 30.0) -> Server:
        self.run(timeout)
        return self

    def stored_events(self) -> int:
        return int(backends.scalar(self.database_url, "SELECT count(*) FROM events"))


@dataclass
class Load:
    """Closed-loop load with wrk, or with the Python fallback when wrk is absent."""

    generator: str = "auto"
    connections: int = 64
    threads: int = 1
    wrk: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.wrk = shutil.which("wrk")
        if self.generator == "wrk" and not self.wrk:
            sys.exit("wrk is not installed (apt-get install -y wrk)")
        if self.generator == "python" or not self.wrk:
            if self.generator != "python":
                log(
                    "wrk not found: falling back to the Python load generator "
                    "(benchmarks/loadgen.py), which is slower than wrk and may be the "
                    "limit itself. Install wrk with: apt-get install -y wrk"
                )
            self.wrk = None

    @property
    def name(self) -> str:
        if self.wrk:
            version = subprocess.run([self.wrk, "-v"], capture_output=True, text=True).stdout
            return version.splitlines()[0].split(" [")[0] if version else "wrk"
        return "python closed loop (benchmarks/loadgen.py)"

    def command(self, url: str, mode: str, size: int = 100, duration: float = 10) -> str:
        return (
            f"wrk -t{self.threads} -c{self.connections} -d{duration:g}s --latency "
            f"-s benchmarks/wrk/ingest.lua {url} -- {mode} TAG"
            + (f" {size}" if mode == "batch" else "")
        )

    def run(
        self,
        server: IngestdProcess,
        path: str,
        mode: str,
        tag: str,
        duration: float,
        size: int = 100,
    ) -> dict[str, Any]:
        cpu0 = server.cpu_seconds()
        busy0 = machine_busy_seconds()
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        if self.wrk:
            cmd = [
                self.wrk,
                f"-t{self.threads}",
                f"-c{self.connections}",
                f"-d{duration:g}s",
                "--timeout",
                "10s",
                "--latency",
                "-s",
                str(LUA),
                server.url + path,
                "--",
                mode,
                tag,
                str(size),
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
            match = re.search(r"^WRK_JSON (.*)$", out.stdout, re.MULTILINE)
            if match is None:
                raise RuntimeError(f"wrk gave no result:\n{out.stdout}\n{out.stderr}")
            result: dict[str, Any] = json.loads(match.group(1))
            result["generator"] = self.name
        else:
            result = loadgen.closed_loop(
                "127.0.0.1",
                server.port,
                path,
                mode,
                tag,
                connections=self.connections,
                duration=duration,
                processes=self.threads,
            )
        wall = time.monotonic() - t0
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        seconds = result["duration_us"] / 1e6
        ok = result["requests"] - result["non2xx"]
        server_cpu = server.cpu_seconds() - cpu0
        result["rps"] = result["requests"] / seconds
        result["ok"] = ok
        result["events"] = ok * (size if mode == "batch" else 1)
        result["events_per_s"] = result["events"] / seconds
        result["server_cpu_pct"] = 100 * server_cpu / wall
        # what holds on any machine: the server's CPU per answered event
        result["server_cpu_us_per_event"] = 1e6 * server_cpu / max(1, result["events"])
        result["loadgen_cpu_pct"] = (
            100
            * (children1.ru_utime + children1.ru_stime - children0.ru_utime - children0.ru_stime)
            / wall
        )
        # CPU used by everything else on the machine meanwhile (other sessions, tests):
        # the server and the load generator share the cores with it.
        result["other_cpu_pct"] = max(
            0.0,
            100 * (machine_busy_seconds() - busy0) / wall
            - result["server_cpu_pct"]
            - result["loadgen_cpu_pct"],
        )
        result["load_average"] = load_average()
        result["command"] = self.command(server.url + path, mode, size, duration)
        return result


def show(name: str, r: dict[str, Any]) -> None:
    lat = r["latency_us"]
    log(
        f"{name:8s} {r['rps']:9.0f} req/s {r['events_per_s']:9.0f} ev/s  "
        f"p50 {lat['p50'] / 1000:.2f} p95 {lat['p95'] / 1000:.2f} p99 {lat['p99'] / 1000:.2f} "
        f"ms  non-2xx {r['non2xx']} errors {sum(r['errors'].values()) - r['errors']['status']}  "
        f"CPU: server {r['server_cpu_pct']:.0f}% ({r['server_cpu_us_per_event']:.0f} µs/event) "
        f"loadgen {r['loadgen_cpu_pct']:.0f}% other {r['other_cpu_pct']:.0f}%  "
        f"load {r['load_average']:.1f}"
    )


@dataclass
class Context:
    """What run.py hands every scenario: options, the load generator, shared servers."""

    args: Any
    load: Load
    results: dict[str, Any]
    servers: dict[str, Server] = field(default_factory=dict)

    @property
    def workdir(self) -> Path:
        return Path(self.args.workdir)

    def shared_server(self, name: str = "main") -> Server:
        """One server for the scenarios that compare with each other (ceiling, single,
        batch): the same process, so their ratio is measured in the same conditions."""
        if name not in self.servers:
            server = Server(self.workdir, name).start_now()
            log(f"server pid {server.pid} on {server.url} (SQLite FULL), RSS {server.rss_kb()} KiB")
            self.servers[name] = server
        return self.servers[name]

    def profile(
        self, server: IngestdProcess, path: str, mode: str, name: str, seconds: float = 6
    ) -> dict[str, Any] | None:
        """With --py-spy: sample the server under the same load in an extra run after the
        measured ones (so profiling does not distort the figures)."""
        if not self.args.py_spy:
            return None
        log(f"profiling {name} with py-spy ...")
        raw = self.workdir / "profiles" / f"profile-{name}.folded"
        spy = profiling.record(self.args.py_spy, server.pid, raw, seconds)
        self.load.run(server, path, mode, f"prof-{name}-{int(time.time())}", seconds + 2)
        spy.wait(timeout=60)
        return profiling.summarize(raw, raw.with_suffix(".txt"))

    def close(self) -> None:
        for server in self.servers.values():
            server.shutdown()
        self.servers.clear()

    def measure(
        self, server: IngestdProcess, path: str, mode: str, name: str, size: int = 100
    ) -> dict[str, Any]:
        """A warm-up, then --repeat measured runs; the one least disturbed by other
        processes is reported and every run's figures are kept under "runs"."""
        args = self.args
        stamp = f"{name}{int(time.time() * 1000)}"
        self.load.run(server, path, mode, f"w{stamp}", args.warmup, size)
        runs = []
        for i in range(args.repeat):
            r = self.load.run(server, path, mode, f"m{stamp}r{i}", args.duration, size)
            show(name, r)
            runs.append(r)
        best = dict(min(runs, key=lambda r: r["other_cpu_pct"]))
        keep = ("rps", "events_per_s", "latency_us", "other_cpu_pct", "server_cpu_pct")
        best["runs"] = [
            {k: r[k] for k in keep}
            | {"events": r["events"], "load_average": r["load_average"]}
            | {"server_cpu_us_per_event": r["server_cpu_us_per_event"]}
            for r in runs
        ]
        return best
