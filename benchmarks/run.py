"""ingestd benchmark (`make bench`): a real `ingestd serve` process under load on 127.0.0.1.

Scenarios (each against a fresh SQLite database in --workdir):

  ceiling  POST /_bench/noop, the raw ASGI no-op on the same server (INGESTD_BENCH_NOOP)
  single   POST /ingest, one event per request, unique ids, SQLite synchronous=FULL
  batch    POST /ingest/batch, 100 events per request (events/s)
  normal   `single` again with INGESTD_SQLITE_SYNCHRONOUS=NORMAL
  rss      server RSS sampled while 1,000,000 events arrive in 100-event batches
  e2e      202 -> delivered/completed at a paced 1,000 events/s, no-op handler destination

ceiling, single and batch run on one server process, one after the other. Load comes
from wrk (closed loop: each connection waits for its answer before sending again, so a
stall lowers the request rate instead of showing up as latency -- coordinated
omission; the e2e test uses an open-loop sender instead). Without wrk the script says
so and uses benchmarks/loadgen.py. The load generator shares the machine's cores with
the server. Nothing is installed here; see benchmarks/RESULTS.md.

    .venv/bin/python benchmarks/run.py                 # everything, ~3 minutes
    .venv/bin/python benchmarks/run.py --only single,batch --duration 5
    .venv/bin/python benchmarks/run.py --py-spy /tmp/pyspy-venv/bin/py-spy   # + profiles
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import json
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import backends  # noqa: E402
import loadgen  # noqa: E402
import matrix  # noqa: E402

LUA = BENCH / "wrk" / "ingest.lua"
DEFAULT_SCENARIOS = ("ceiling", "single", "batch", "normal", "rss", "e2e")
# issue 4 (SQLite beside PostgreSQL, benchmarks/matrix.py): only when asked for with --only
SCENARIOS = (*DEFAULT_SCENARIOS, "ingest", "worker")
SRC_OVERRIDE: list[str] = []
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

HANDLER_TOML = """\
[[destinations]]
name = "noop"
kind = "handler"
handler = "bench_handler:record"
"""


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat), to spot other load."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the server under test --------------------------------------------------------------


class Server:
    """One `ingestd serve` (or `ingestd api [--workers N]`) process, by default with its
    own SQLite file; `database_url` points it at another database (PostgreSQL)."""

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
    ) -> None:
        self.dir = workdir / name
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.db = self.dir / "ingestd.db"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.synchronous = synchronous
        self.database_url = database_url or f"sqlite:///{self.db}"
        self.command = command
        self.workers = workers
        self.env = {
            **os.environ,
            "INGESTD_DATABASE_URL": self.database_url,
            "INGESTD_SQLITE_SYNCHRONOUS": synchronous,
            "INGESTD_BENCH_NOOP": "true",
            "INGESTD_LOG_LEVEL": "warning",
            # benchmarks/ for the handler module; --src (a snapshot) before the editable install
            "PYTHONPATH": os.pathsep.join([*SRC_OVERRIDE, str(BENCH)]),
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        exe = ROOT / ".venv" / "bin" / "ingestd"
        cmd = [str(exe), self.command, "--host", "127.0.0.1", "--port", str(self.port)]
        if self.workers > 1:
            cmd += ["--workers", str(self.workers)]
        self.log = open(self.dir / "server.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited at start; see {self.dir / 'server.log'}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise RuntimeError("server did not answer /health within 30 s")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_kb(self) -> int:
        with open(f"/proc/{self.pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KB

    def cpu_seconds(self) -> float:
        """CPU of the server and its child processes (`--workers N` spawns N)."""
        return backends.tree_cpu_seconds(self.pid)

    def stored_events(self) -> int:
        return int(backends.scalar(self.database_url, "SELECT count(*) FROM events"))

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        self.proc = None


# -- load -----------------------------------------------------------------------------------


class Load:
    """Closed-loop load with wrk, or with the Python fallback when wrk is absent."""

    def __init__(self, generator: str, connections: int, threads: int) -> None:
        self.wrk = shutil.which("wrk")
        if generator == "wrk" and not self.wrk:
            sys.exit("wrk is not installed (apt-get install -y wrk)")
        if generator == "python" or not self.wrk:
            if generator != "python":
                log(
                    "wrk not found: falling back to the Python load generator "
                    "(benchmarks/loadgen.py), which is slower than wrk and may be the "
                    "limit itself. Install wrk with: apt-get install -y wrk"
                )
            self.wrk = None
        self.connections = connections
        self.threads = threads

    @property
    def name(self) -> str:
        if self.wrk:
            version = subprocess.run([self.wrk, "-v"], capture_output=True, text=True).stdout
            return version.splitlines()[0].split(" [")[0] if version else "wrk"
        return "python closed loop (benchmarks/loadgen.py)"

    def command(self, server: Server, path: str, mode: str, tag: str, duration: float) -> str:
        return (
            f"wrk -t{self.threads} -c{self.connections} -d{duration:g}s --latency "
            f"-s benchmarks/wrk/ingest.lua {server.url}{path} -- {mode} {tag}"
            + (" 100" if mode == "batch" else "")
        )

    def run(
        self, server: Server, path: str, mode: str, tag: str, duration: float
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
                "100",
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
        result["rps"] = result["requests"] / seconds
        result["ok"] = ok
        result["events"] = ok * (100 if mode == "batch" else 1)
        result["events_per_s"] = result["events"] / seconds
        result["server_cpu_pct"] = 100 * (server.cpu_seconds() - cpu0) / wall
        result["loadgen_cpu_pct"] = (
            100
            * (children1.ru_utime + children1.ru_stime - children0.ru_utime - children0.ru_stime)
            / wall
        )
        # CPU used by everything else on the machine meanwhile (other sessions, tests):
        # the server and the load generator share 2 cores with it.
        result["other_cpu_pct"] = max(
            0.0,
            100 * (machine_busy_seconds() - busy0) / wall
            - result["server_cpu_pct"]
            - result["loadgen_cpu_pct"],
        )
        result["command"] = self.command(server, path, mode, tag, duration)
        return result


def show(name: str, r: dict[str, Any]) -> None:
    lat = r["latency_us"]
    log(
        f"{name:8s} {r['rps']:9.0f} req/s {r['events_per_s']:9.0f} ev/s  "
        f"p50 {lat['p50'] / 1000:.2f} p95 {lat['p95'] / 1000:.2f} p99 {lat['p99'] / 1000:.2f} "
        f"ms  non-2xx {r['non2xx']} errors {sum(r['errors'].values()) - r['errors']['status']}  "
        f"CPU: server {r['server_cpu_pct']:.0f}% loadgen {r['loadgen_cpu_pct']:.0f}% "
        f"other {r['other_cpu_pct']:.0f}%"
    )


# -- profiling (optional, py-spy from outside: not installed by this script) ------------


def profile(
    pyspy: str, server: Server, load: Load, path: str, mode: str, out: Path, seconds: int = 6
) -> dict[str, Any]:
    """Run load for seconds+2 s while py-spy samples the server; summarize the stacks."""
    raw = out.with_suffix(".folded")
    spy = subprocess.Popen(
        [
            pyspy,
            "record",
            "--pid",
            str(server.pid),
            "--duration",
            str(seconds),
            "--rate",
            "250",
            "--format",
            "raw",
            "--threads",
            "--nonblocking",
            "-o",
            str(raw),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    load.run(server, path, mode, f"prof-{mode}-{int(time.time())}", seconds + 2)
    spy.wait(timeout=60)
    return summarize_folded(raw, out)


def summarize_folded(raw: Path, out: Path, top: int = 30) -> dict[str, Any]:
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    if not raw.exists():
        return {"error": f"py-spy wrote nothing ({raw})"}
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0]
        frames = [clean_frame(f) for f in frames[1:]]
        total += count
        threads[thread_name(thread)] += count
        if frames:
            self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"samples: {total} (non-idle, all threads)", "", "by thread:"]
    lines += [f"  {100 * n / total:5.1f}%  {t}" for t, n in threads.most_common()]
    lines += ["", "self time (leaf frame):"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in self_time.most_common(top)]
    lines += ["", "inclusive time (frame anywhere on the stack):"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    out.write_text("\n".join(lines) + "\n")
    return {
        "samples": total,
        "summary_file": str(out),
        "self_top": [(f, round(100 * n / total, 1)) for f, n in self_time.most_common(12)],
        "inclusive_top": [(f, round(100 * n / total, 1)) for f, n in inclusive.most_common(20)],
    }


def clean_frame(frame: str) -> str:
    # "func (/path/to/site-packages/pkg/mod.py:123)" -> "func (pkg/mod.py:123)"
    frame = re.sub(r"\(/[^)]*?/(site-packages|src|lib/python3\.\d+)/", "(", frame)
    return frame


def thread_name(thread: str) -> str:
    # "thread (16051): MainThread" -> "MainThread"; pool threads lose their number
    name = thread.split(": ", 1)[-1]
    return re.sub(r"_\d+$", "", name)


# -- scenarios --------------------------------------------------------------------------------


def measure(
    args: argparse.Namespace, load: Load, server: Server, path: str, mode: str, tag: str, name: str
) -> dict[str, Any]:
    """--repeat measured runs; the one least disturbed by other processes is reported.

    The machine may be shared (other sessions' tests): the run during which everything
    else used the least CPU is the closest to the server's own capacity. Every run's
    figures are kept under "runs".
    """
    runs = []
    for i in range(args.repeat):
        r = load.run(server, path, mode, f"{tag}r{i}", args.duration)
        show(name, r)
        runs.append(r)
    best = dict(min(runs, key=lambda r: r["other_cpu_pct"]))
    best["runs"] = [
        {k: r[k] for k in ("rps", "events_per_s", "latency_us", "other_cpu_pct", "server_cpu_pct")}
        | {"events": r["events"]}
        for r in runs
    ]
    if args.repeat > 1:
        spread = sorted(r["events_per_s"] for r in runs)
        log(f"{name}: reporting the run with the least other CPU; events/s over runs {spread}")
    return best


def scenario_main(args: argparse.Namespace, load: Load, results: dict[str, Any]) -> None:
    """ceiling, single, batch on one server, in that order."""
    wanted = [s for s in ("ceiling", "single", "batch") if s in args.only]
    if not wanted:
        return
    server = Server(args.workdir, "main").start()
    log(f"server pid {server.pid} on {server.url} (SQLite FULL), RSS {server.rss_kb()} KiB")
    stamp = int(time.time())
    sent = 0
    try:
        for name, path, mode in (
            ("ceiling", "/_bench/noop", "noop"),
            ("single", "/ingest", "single"),
            ("batch", "/ingest/batch", "batch"),
        ):
            if name not in wanted:
                continue
            warm = load.run(server, path, mode, f"w{name}{stamp}", args.warmup)
            result = measure(args, load, server, path, mode, f"m{name}{stamp}", name)
            results[name] = result
            if mode != "noop":
                sent += warm["events"] + sum(r["events"] for r in result["runs"])
            if args.py_spy and mode != "noop":
                log(f"profiling {name} with py-spy ...")
                result["profile"] = profile(
                    args.py_spy, server, load, path, mode, args.out / f"profile-{name}.txt"
                )
        results["main_server"] = {
            "rss_kb_end": server.rss_kb(),
            "stored_events": server.stored_events(),
            "acknowledged_events_measured_and_warmup": sent,
            "note": "stored_events also counts the events of the profiling runs",
        }
    finally:
        server.stop()


def scenario_normal(args: argparse.Namespace, load: Load, results: dict[str, Any]) -> None:
    server = Server(args.workdir, "normal", synchronous="NORMAL").start()
    log(f"server pid {server.pid} on {server.url} (SQLite NORMAL)")
    try:
        stamp = int(time.time())
        load.run(server, "/ingest", "single", f"wn{stamp}", args.warmup)
        result = measure(args, load, server, "/ingest", "single", f"mn{stamp}", "normal")
        result["command"] = "INGESTD_SQLITE_SYNCHRONOUS=NORMAL; " + result["command"]
        results["normal"] = result
        if args.py_spy:
            log("profiling normal with py-spy ...")
            result["profile"] = profile(
                args.py_spy, server, load, "/ingest", "single", args.out / "profile-normal.txt"
            )
    finally:
        server.stop()


def scenario_rss(args: argparse.Namespace, load: Load, results: dict[str, Any]) -> None:
    """Batches in chunks of --rss-chunk seconds until --rss-events events are acknowledged."""
    env = {}
    if args.rss_with_handler:
        (args.workdir / "rss-handler.toml").write_text(HANDLER_TOML)
        env = {
            "INGESTD_CONFIG": str(args.workdir / "rss-handler.toml"),
            "BENCH_DELIVERY_LOG": "/dev/null",
        }
    server = Server(args.workdir, "rss", env=env).start()
    start_rss = server.rss_kb()
    log(f"server pid {server.pid} (SQLite FULL), RSS at start {start_rss} KiB")
    samples: list[tuple[float, int, int]] = []  # (seconds, events acknowledged so far, rss)
    done = threading.Event()
    events = 0
    t0 = time.monotonic()

    def sampler() -> None:
        while not done.wait(0.5):
            with contextlib.suppress(OSError):
                samples.append((time.monotonic() - t0, events, server.rss_kb()))

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    chunks = []
    stamp = int(time.time())
    deadline = time.monotonic() + args.rss_max_seconds
    try:
        while events < args.rss_events and time.monotonic() < deadline:
            r = load.run(
                server, "/ingest/batch", "batch", f"r{stamp}c{len(chunks)}", args.rss_chunk
            )
            events += r["events"]
            rss = server.rss_kb()
            chunks.append(
                {
                    "events": events,
                    "rss_kb": rss,
                    "events_per_s": r["events_per_s"],
                    "p99_ms": r["latency_us"]["p99"] / 1000,
                    "non2xx": r["non2xx"],
                }
            )
            log(f"rss: {events:>9,} events  RSS {rss:,} KiB  {r['events_per_s']:,.0f} ev/s")
    finally:
        done.set()
        thread.join()
        end_rss = server.rss_kb()
        db_bytes = sum(p.stat().st_size for p in server.dir.glob("ingestd.db*"))
        server.stop()
    warm_events = args.rss_events * args.rss_warmup_fraction
    after = [s for s in samples if s[1] >= warm_events]
    warm_rss = after[0][2] if after else end_rss
    low = min((s[2] for s in after), default=end_rss)
    high = max((s[2] for s in after), default=end_rss)
    results["rss"] = {
        "events": events,
        "seconds": time.monotonic() - t0,
        "rss_kb_start": start_rss,
        "rss_kb_after_warmup": warm_rss,
        "warmup_events": int(warm_events),
        "rss_kb_min_after_warmup": low,
        "rss_kb_max_after_warmup": high,
        "rss_kb_end": end_rss,
        "max_deviation_pct": 100 * max(high - warm_rss, warm_rss - low) / warm_rss,
        "deviation_by_warmup": deviation_by_warmup(samples, args.rss_events),
        "end_vs_warmup_pct": 100 * (end_rss - warm_rss) / warm_rss,
        "within_10pct": high <= warm_rss * 1.1 and low >= warm_rss * 0.9,
        "db_bytes": db_bytes,
        "with_handler_destination": bool(args.rss_with_handler),
        "chunks": chunks,
        "samples": samples,
        "command": f"repeat until >= {args.rss_events:,} events: "
        + load.command(server, "/ingest/batch", "batch", "TAG", args.rss_chunk),
    }
    log(
        f"rss: start {start_rss:,} KiB, after {int(warm_events):,} events {warm_rss:,} KiB, "
        f"end {end_rss:,} KiB, range after warm-up {low:,}..{high:,} KiB "
        f"({results['rss']['max_deviation_pct']:.1f}% max deviation)"
    )


def deviation_by_warmup(samples: list[tuple[float, int, int]], total: int) -> dict[str, float]:
    """Max RSS deviation (%) from the first sample after each warm-up length."""
    out = {}
    for fraction in (0.05, 0.1, 0.2, 0.3, 0.5):
        after = [s[2] for s in samples if s[1] >= total * fraction]
        if after:
            base = after[0]
            out[f"{fraction:g}"] = round(100 * max(max(after) - base, base - min(after)) / base, 1)
    return out


def scenario_e2e(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Open loop at --rate events/s; the handler destination logs each delivery time."""
    config = args.workdir / "e2e-handler.toml"
    config.write_text(HANDLER_TOML)
    delivery_log = args.workdir / "e2e-deliveries.log"
    delivery_log.unlink(missing_ok=True)
    env = {
        "INGESTD_CONFIG": str(config),
        "BENCH_DELIVERY_LOG": str(delivery_log),
    }
    with backends.database(args.e2e_backend, args.workdir, "e2e") as url:
        server = Server(args.workdir, "e2e", env=env, database_url=url).start()
        log(f"server pid {server.pid} ({url}, no-op handler destination), open loop")
        return e2e_run(args, results, server, delivery_log)


def e2e_run(
    args: argparse.Namespace, results: dict[str, Any], server: Server, delivery_log: Path
) -> None:
    try:
        tag = f"e{int(time.time())}"
        cpu0 = server.cpu_seconds()
        busy0 = machine_busy_seconds()
        self0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        records = arun(loadgen.paced(server.url, tag, rate=args.rate, duration=args.e2e_duration))
        send_wall = time.monotonic() - t0
        self1 = resource.getrusage(resource.RUSAGE_SELF)
        sender_cpu = (
            100 * (self1.ru_utime + self1.ru_stime - self0.ru_utime - self0.ru_stime) / send_wall
        )
        server_send_cpu = 100 * (server.cpu_seconds() - cpu0) / send_wall
        other_cpu = max(
            0.0,
            100 * (machine_busy_seconds() - busy0) / send_wall - sender_cpu - server_send_cpu,
        )
        accepted = [r for r in records if r.get("status") == 202]
        (args.workdir / "e2e-records.json").write_text(json.dumps(records))
        deadline = time.monotonic() + 30
        delivered: dict[str, float] = {}
        while time.monotonic() < deadline:
            delivered = read_deliveries(delivery_log)
            if all(r["id"] in delivered for r in accepted):
                break
            time.sleep(0.2)
        server_cpu = 100 * (server.cpu_seconds() - cpu0) / (time.monotonic() - t0)
        statuses = arun(loadgen.fetch_status(server.url, [r["id"] for r in accepted]))
    finally:
        server.stop()
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
    results["e2e"] = {
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
        "sender_lag_us": loadgen.latency_summary_us([r["sent"] - r["due"] for r in records]),
        "accept_latency_us": loadgen.latency_summary_us(accept_latency),
        "accepted_to_delivered_us": loadgen.latency_summary_us(to_delivery),
        "due_to_delivered_us": loadgen.latency_summary_us(due_to_delivery),
        "accepted_to_processed_at_us": loadgen.latency_summary_us(to_processed),
        "command": f"python benchmarks/run.py --only e2e --rate {args.rate:g} "
        f"--e2e-duration {args.e2e_duration:g} --e2e-backend {args.e2e_backend}",
    }
    e = results["e2e"]
    lat = e["accepted_to_delivered_us"]
    log(
        f"e2e: {e['accepted_202']}/{e['sent']} accepted, {e['delivered']} delivered, "
        f"{e['completed']} completed; 202->delivered p50 {lat['p50'] / 1000:.2f} "
        f"p95 {lat['p95'] / 1000:.2f} p99 {lat['p99'] / 1000:.2f} ms; accept p99 "
        f"{e['accept_latency_us']['p99'] / 1000:.2f} ms"
    )


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


# -- report -------------------------------------------------------------------------------------


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
    }


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    rows: list[tuple[str, str, bool | None]] = []
    ceiling, single = results.get("ceiling"), results.get("single")
    if ceiling and single:
        share = single["rps"] / ceiling["rps"]
        rows.append(("single >= 50% of no-op req/s", f"{100 * share:.0f}%", share >= 0.5))
        p99 = single["latency_us"]["p99"] / 1000
        rows.append(("single P99 <= 10 ms", f"{p99:.1f} ms", p99 <= 10))
    if "batch" in results:
        eps = results["batch"]["events_per_s"]
        rows.append(("batch >= 100,000 events/s", f"{eps:,.0f}", eps >= 100_000))
    if "rss" in results:
        r = results["rss"]
        rows.append(
            (
                "RSS flat +-10% over 1M events",
                f"{r['max_deviation_pct']:.1f}% ({r['events']:,} events)",
                r["within_10pct"] and r["events"] >= 1_000_000,
            )
        )
    if "e2e" in results:
        p99 = results["e2e"]["accepted_to_delivered_us"]["p99"] / 1000
        rows.append(
            (f"e2e P99 <= 50 ms at {results['e2e']['rate']:g}/s", f"{p99:.1f} ms", p99 <= 50)
        )
    return rows


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    out = [
        f"Run {m['date']} on {m['nproc']} x {m['cpu']}, kernel {m['kernel']}, "
        f"Python {m['python']}, ingestd {m['git']}, load generator: {results['generator']}, "
        f"{results['connections']} connections, {results['duration']:g} s per run.",
        "",
        "| scenario | req/s | events/s | P50 ms | P95 ms | P99 ms | P99.9 ms | non-2xx "
        "| server CPU | loadgen CPU | other CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    labels = {
        "ceiling": "no-op ceiling `/_bench/noop`",
        "single": "single event `/ingest`, FULL",
        "batch": "100-event batch `/ingest/batch`, FULL",
        "normal": "single event `/ingest`, NORMAL",
    }
    for key, label in labels.items():
        r = results.get(key)
        if not r:
            continue
        lat = r["latency_us"]
        out.append(
            f"| {label} | {r['rps']:,.0f} | {r['events_per_s']:,.0f} | {lat['p50'] / 1000:.2f} "
            f"| {lat['p95'] / 1000:.2f} | {lat['p99'] / 1000:.2f} | {lat['p999'] / 1000:.2f} "
            f"| {r['non2xx']} | {r['server_cpu_pct']:.0f}% | {r['loadgen_cpu_pct']:.0f}% "
            f"| {r['other_cpu_pct']:.0f}% |"
        )
    spreads = [
        f"{labels[k].split(' `')[0]}: "
        + ", ".join(
            f"{r['events_per_s']:,.0f} (other CPU {r['other_cpu_pct']:.0f}%)"
            for r in results[k]["runs"]
        )
        for k in labels
        if k in results and len(results[k].get("runs", ())) > 1
    ]
    if spreads:
        out += ["", "All measured runs, events/s (the least disturbed one is in the table):", ""]
        out += [f"- {line}" for line in spreads]
    if "e2e" in results:
        e = results["e2e"]
        out += [
            "",
            f"End to end, open loop at {e['rate']:g} events/s ({e['sent']:,} events, "
            f"{e['accepted_202']:,} accepted, {e['delivered']:,} delivered, "
            f"{e['completed']:,} `completed`; CPU while sending: server "
            f"{e['server_cpu_pct_while_sending']:.0f}%, sender {e['sender_cpu_pct']:.0f}%, "
            f"other {e['other_cpu_pct']:.0f}%; sender lag P99 "
            f"{e['sender_lag_us']['p99'] / 1000:.1f} ms):",
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
    if "rss" in results:
        r = results["rss"]
        out += [
            "",
            f"RSS over {r['events']:,} events in 100-event batches ({r['seconds']:.0f} s, "
            f"database {r['db_bytes'] / 2**20:,.0f} MiB): start {r['rss_kb_start'] / 1024:.1f} "
            f"MiB, after {r['warmup_events']:,} events (warm-up) "
            f"{r['rss_kb_after_warmup'] / 1024:.1f} MiB, then "
            f"{r['rss_kb_min_after_warmup'] / 1024:.1f}..{r['rss_kb_max_after_warmup'] / 1024:.1f}"
            f" MiB, end {r['rss_kb_end'] / 1024:.1f} MiB "
            f"(max deviation {r['max_deviation_pct']:.1f}%, end {r['end_vs_warmup_pct']:+.1f}%). "
            "Max deviation by warm-up length (share of events: %): "
            + ", ".join(f"{k}: {v}" for k, v in r["deviation_by_warmup"].items())
            + ".",
        ]
    out += matrix.markdown(results)
    rows = targets(results)
    if rows:
        out += ["", "| target | measured | met |", "|---|---|---|"]
        out += [f"| {t} | {v} | {'yes' if ok else 'NO'} |" for t, v, ok in rows]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--only",
        default=",".join(DEFAULT_SCENARIOS),
        help=f"comma-separated scenarios out of {','.join(SCENARIOS)}",
    )
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    p.add_argument(
        "--repeat", type=int, default=1, help="measured runs per scenario (least disturbed wins)"
    )
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up before each")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--threads", type=int, default=2, help="wrk threads / loadgen processes")
    p.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--rss-events", type=int, default=1_000_000)
    p.add_argument("--rss-chunk", type=float, default=5.0, help="seconds per wrk run")
    p.add_argument("--rss-max-seconds", type=float, default=600.0, help="upper bound")
    p.add_argument(
        "--rss-warmup-fraction",
        type=float,
        default=0.2,
        help="share of --rss-events counted as warm-up (SQLite's 64 MiB page cache fills first)",
    )
    p.add_argument("--rss-with-handler", action="store_true", help="no-op destination too")
    p.add_argument("--rate", type=float, default=1000.0, help="e2e events/s")
    p.add_argument("--e2e-duration", type=float, default=10.0)
    p.add_argument("--e2e-backend", choices=backends.BACKENDS, default="sqlite")
    p.add_argument("--backend", default="sqlite,postgres", help="ingest/worker scenarios: backends")
    p.add_argument("--api-processes", default="1,2", help="ingest scenario: `--workers` values")
    p.add_argument("--worker-processes", default="1,2", help="worker scenario: processes")
    p.add_argument("--worker-events", type=int, default=50_000, help="jobs loaded per run")
    p.add_argument("--worker-timeout", type=float, default=120.0)
    p.add_argument("--worker-concurrency", type=int, default=256)
    p.add_argument("--worker-batch", type=int, default=256)
    p.add_argument("--py-spy", default=None, help="path to a py-spy binary: profile too")
    p.add_argument(
        "--src",
        type=Path,
        default=None,
        help="run the server from this copy of src/ (e.g. `git archive HEAD src`) instead of "
        "the working tree",
    )
    p.add_argument("--workdir", type=Path, default=Path("/tmp/ingestd-bench"))
    p.add_argument("--out", type=Path, default=BENCH / "results")
    args = p.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    args.backend = [b.strip() for b in args.backend.split(",") if b.strip()]
    args.api_processes = [int(n) for n in args.api_processes.split(",")]
    args.worker_processes = [int(n) for n in args.worker_processes.split(",")]
    if set(args.backend) - set(backends.BACKENDS):
        p.error(f"--backend: one or more of {', '.join(backends.BACKENDS)}")
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if not (ROOT / ".venv" / "bin" / "ingestd").exists():
        p.error("no .venv/bin/ingestd: run `make install-dev` first")
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.src is not None:
        SRC_OVERRIDE.append(str(args.src.resolve()))
    args.out.mkdir(parents=True, exist_ok=True)

    args.summarize = summarize_folded
    load = Load(args.generator, args.connections, args.threads)
    results: dict[str, Any] = {
        "machine": machine(),
        "generator": load.name,
        "connections": args.connections,
        "threads": args.threads,
        "duration": args.duration,
    }
    if args.src is not None:
        results["machine"]["git"] += f"; server code from {args.src}"
    log(f"machine: {results['machine']}; load: {load.name}")
    scenario_main(args, load, results)
    if "normal" in args.only:
        scenario_normal(args, load, results)
    if "e2e" in args.only:
        scenario_e2e(args, results)
    if "rss" in args.only:
        scenario_rss(args, load, results)
    if "ingest" in args.only:
        matrix.scenario_ingest(args, load, results, Server, measure, log)
    if "worker" in args.only:
        matrix.scenario_worker(args, results, Server, log, machine_busy_seconds)

    text = markdown(results)
    print("\n" + text)
    suffix = "" if set(args.only) == set(DEFAULT_SCENARIOS) else "-" + "-".join(args.only)
    (args.out / f"latest{suffix}.json").write_text(json.dumps(results, indent=1, default=str))
    (args.out / f"latest{suffix}.md").write_text(text)
    log(f"wrote {args.out / f'latest{suffix}.md'} and .json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
