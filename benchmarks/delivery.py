"""Delivery benchmark: webhook throughput of one worker process, and 202 → receiver latency.

  throughput  N events are stored first (by `ingestd api`), then one `ingestd worker`
              delivers them to a fast loopback receiver; webhooks/s between the first and
              the last arrival (target: >= 3,000/s per worker process).
  e2e         `ingestd serve` with one webhook destination, events sent open loop at a
              fixed rate by the `ingestd bench` generator (a process of its own); latency
              from the 202 to the receiver getting the POST (clamped at 0: the POST can
              arrive before the 202 does). Target: P99 <= 50 ms at 1,000 events/s.

The receiver (ingestd.bench.receiver, a raw asyncio HTTP/1.1 endpoint) runs in this
process, the server and the generator in their own. Everything shares the machine's cores.
  proxy       throughput four ways in one run: HTTP and HTTPS receivers, each directly and
              through a forward proxy on loopback (Debian's tinyproxy; HTTPS via CONNECT).
              The worker's CPU per webhook shows what the proxy costs the client.
  attempt-log the attempt log's cost to one worker: throughput with INGESTD_ATTEMPT_LOG off
              and on, alternated --rounds times in one run (--backend sqlite|postgres).
--profile writes the throughput worker's cProfile stats.

    python -m benchmarks.delivery --events 20000 --rate 1000 --seconds 10
    python -m benchmarks.delivery --events 20000 --only proxy
    python -m benchmarks.delivery --events 20000 --only attempt-log --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.backends import BACKENDS, database, scalar
from ingestd.bench.load import LoadSpec
from ingestd.bench.process import IngestdProcess
from ingestd.bench.receiver import Receiver
from ingestd.bench.runner import run_load

TLS = Path(__file__).parent.parent / "tests" / "unit" / "tls"
"""A self-signed certificate for 127.0.0.1 (tests only): the HTTPS receiver's, and its CA."""


def environment(workdir: Path, url: str) -> dict[str, str]:
    config = workdir / "ingestd.toml"
    config.write_text(
        f"""
[[destinations]]
name = "bench"
kind = "webhook"
url = "{url}"
secrets = ["whsec_{"A" * 32}"]
max_in_flight = 512
"""
    )
    return {
        **os.environ,
        "INGESTD_DATABASE_URL": f"sqlite:///{workdir}/bench.db",
        "INGESTD_CONFIG": str(config),
        "INGESTD_WEBHOOK_ALLOW_NETS": '["127.0.0.0/8"]',
        "INGESTD_LOG_LEVEL": "warning",
        "INGESTD_WORKER_CONCURRENCY": "512",
        "INGESTD_WORKER_BATCH": "512",
    }


def process(
    command: str, env: dict[str, str], workdir: Path, profile: str | None = None
) -> IngestdProcess:
    """`ingestd <command>`; with --profile the worker runs under cProfile."""
    executable = None
    if profile:
        executable = [sys.executable, "-m", "cProfile", "-o", profile, "-m", "ingestd.cli"]
    return IngestdProcess(command, log=workdir / f"{command}.log", env=env, executable=executable)


async def throughput(
    events: int,
    profile: str | None = None,
    tls: bool = False,
    proxy: str | None = None,
    label: str = "throughput",
    extra_env: dict[str, str] | None = None,
    cpu: list[float] | None = None,
) -> float:
    """Webhooks/s first→last arrival (printed with CPU per webhook, appended to `cpu`)."""
    context = None
    if tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(TLS / "receiver-cert.pem", TLS / "receiver-key.pem")
    receiver = Receiver(tls=context)
    await receiver.start()
    workdir = Path(tempfile.mkdtemp(prefix="ingestd-delivery-"))
    env = environment(workdir, receiver.url)
    if tls:
        env["INGESTD_CA_BUNDLE"] = str(TLS / "receiver-cert.pem")
    env["INGESTD_OUTBOUND_PROXY"] = proxy or "direct"
    env.update(extra_env or {})
    api = process("api", env, workdir)
    await api.start()
    async with httpx.AsyncClient(base_url=api.url, timeout=60) as client:
        for start_at in range(0, events, 1000):
            batch = [
                {"source": "bench", "type": "bench.t", "data": {"i": i}}
                for i in range(start_at, min(events, start_at + 1000))
            ]
            r = await client.post("/ingest/batch", json={"events": batch})
            r.raise_for_status()
    await api.stop()
    began = time.monotonic()
    worker = process("worker", env, workdir, profile)
    await worker.start()
    deadline = began + 300
    # CPU is sampled from the first arrival to the last, so start-up is not counted: on a
    # shared machine webhooks/s varies with the neighbours, CPU per webhook much less.
    while not receiver.first and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    cpu_first, mark = worker.cpu_seconds(), len(receiver.first)
    receiver_first = time.process_time()  # this process: the receiver, nothing else now
    while len(receiver.first) < events and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    cpu_used = worker.cpu_seconds() - cpu_first
    receiver_used = time.process_time() - receiver_first
    await worker.stop()
    await receiver.stop()
    arrivals = sorted(receiver.first.values())
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else float("nan")
    per_webhook_us = cpu_used / max(1, len(arrivals) - mark) * 1e6
    receiver_us = receiver_used / max(1, len(arrivals) - mark) * 1e6
    print(
        f"{label}: {len(arrivals)}/{events} delivered by one worker process; "
        f"{len(arrivals) / span:,.0f} webhooks/s first→last arrival "
        f"({len(arrivals) / (arrivals[-1] - began):,.0f}/s including worker start-up); "
        f"{receiver.redeliveries} redeliveries; worker CPU {per_webhook_us:.0f} µs per webhook "
        f"(ceiling {1e6 / per_webhook_us:,.0f}/s on one free core); receiver CPU "
        f"{receiver_us:.0f} µs per webhook"
    )
    shutil.rmtree(workdir, ignore_errors=True)
    if cpu is not None:
        cpu.append(per_webhook_us)
    return len(arrivals) / span


def attempt_log_cost(events: int, rounds: int, backend: str) -> None:
    """The attempt log's cost to the worker: throughput with it off and on, alternated in
    one run (off, on, off, on, …) so both see the same neighbours; medians compared."""
    rates: dict[str, list[float]] = {"false": [], "true": []}
    cpu: dict[str, list[float]] = {"false": [], "true": []}
    workdir = Path(tempfile.mkdtemp(prefix="ingestd-attempts-"))
    for n in range(rounds):
        # Off first in odd rounds, on first in even ones: neither always meets the same
        # moment of a shared machine's load.
        for on in ("false", "true") if n % 2 == 0 else ("true", "false"):
            extra = {"INGESTD_ATTEMPT_LOG": on}
            with database(backend, workdir, f"attempts-{n}-{on}") as url:
                extra["INGESTD_DATABASE_URL"] = url
                label = f"{backend} attempt log {'on ' if on == 'true' else 'off'} (round {n + 1})"
                rates[on].append(
                    asyncio.run(throughput(events, label=label, extra_env=extra, cpu=cpu[on]))
                )
                logged = scalar(url, "SELECT count(*) FROM delivery_attempts")
            print(f"  attempts logged: {logged}; load average: {os.getloadavg()[0]:.2f}")
    off, on_ = statistics.median(rates["false"]), statistics.median(rates["true"])
    cpu_off, cpu_on = statistics.median(cpu["false"]), statistics.median(cpu["true"])
    print(
        f"{backend}: median webhooks/s off {off:,.0f}, on {on_:,.0f} ({on_ / off - 1:+.1%}); "
        f"worker CPU per webhook off {cpu_off:.0f} µs, on {cpu_on:.0f} µs "
        f"({cpu_on / cpu_off - 1:+.1%}); {rounds} rounds of {events} events each"
    )
    shutil.rmtree(workdir, ignore_errors=True)


class Tinyproxy:
    """Debian's tinyproxy on 127.0.0.3, started and stopped by the benchmark."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="ingestd-tinyproxy-"))
        with socket.socket() as s:
            s.bind(("127.0.0.3", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.3:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Tinyproxy:
        binary = shutil.which("tinyproxy")
        if binary is None:
            sys.exit("tinyproxy is not installed (apt-get install tinyproxy; make test does)")
        conf = self.dir / "tinyproxy.conf"
        conf.write_text(
            f"Port {self.port}\nListen 127.0.0.3\nTimeout 60\nMaxClients 1024\n"
            f'LogFile "{self.dir}/tinyproxy.log"\nLogLevel Warning\nAllow 127.0.0.0/8\n'
        )
        self.proc = subprocess.Popen([binary, "-d", "-c", str(conf)], stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.3", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        sys.exit("tinyproxy did not start")

    def __exit__(self, *_exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def through_proxy(events: int) -> None:
    """Direct and proxied throughput, HTTP and HTTPS, one after the other in one run."""
    rates = {}
    with Tinyproxy() as proxy:
        for tls in (False, True):
            scheme = "https" if tls else "http"
            rates[scheme, "direct"] = asyncio.run(
                throughput(events, tls=tls, label=f"{scheme} direct")
            )
            how = "CONNECT" if tls else "forward"
            rates[scheme, "proxy"] = asyncio.run(
                throughput(events, tls=tls, proxy=proxy.url, label=f"{scheme} via proxy ({how})")
            )
    for scheme in ("http", "https"):
        ratio = rates[scheme, "proxy"] / rates[scheme, "direct"]
        print(f"{scheme}: through the proxy {ratio:.0%} of direct webhooks/s")


async def e2e(rate: float, seconds: float) -> None:
    receiver = Receiver()
    await receiver.start()
    workdir = Path(tempfile.mkdtemp(prefix="ingestd-e2e-"))
    server = process("serve", environment(workdir, receiver.url), workdir)
    await server.start()
    # The open-loop generator of `ingestd bench` (its own process, prebuilt requests, due
    # times fixed in advance, so a slow answer cannot delay later sends); the receiver here
    # notes each event's first arrival, joined with the time its 202 came back.
    spec = LoadSpec(
        url=server.url,
        rate=rate,
        duration=seconds,
        concurrency=64,
        e2e=True,
        event_type="bench.e2e",
    )
    cpu_before = server.cpu_seconds()
    try:
        result = await run_load(spec, progress=None, receiver=receiver, e2e_wait=30.0)
    finally:
        cpu_used = server.cpu_seconds() - cpu_before
        await server.stop()
        await receiver.stop()
    e2e = result["e2e"]
    lat, ack = e2e["latency_us"], result["latency_us"]

    def ms(us: float) -> str:
        return f"{us / 1000:.1f}"

    print(
        f"e2e: open loop {rate:,.0f} events/s for {seconds:g} s: {result['requests']} sent, "
        f"statuses {result['statuses']}, {e2e['delivered']} delivered, {e2e['missing']} missing, "
        f"{e2e['redeliveries']} redeliveries; server CPU {cpu_used / seconds:.0%} of a core"
    )
    print(
        f"  202→receiver ms p50 {ms(lat['p50'])}  p95 {ms(lat['p95'])}  p99 {ms(lat['p99'])}  "
        f"max {ms(lat['max'])}  (target p99 <= 50)"
    )
    print(
        f"  due→202 ms     p50 {ms(ack['p50'])}  p95 {ms(ack['p95'])}  p99 {ms(ack['p99'])}  "
        f"max {ms(ack['max'])}  (schedule lag p99 {ms(result['schedule_lag_us']['p99'])})"
    )
    shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--only", choices=["throughput", "e2e", "proxy", "attempt-log"])
    parser.add_argument("--rounds", type=int, default=3, help="attempt-log: off/on pairs")
    parser.add_argument("--backend", choices=BACKENDS, default="sqlite")
    parser.add_argument("--profile", help="write the worker's cProfile stats to this file")
    args = parser.parse_args()
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    if args.only == "proxy":
        through_proxy(args.events)
        return
    if args.only == "attempt-log":
        attempt_log_cost(args.events, args.rounds, args.backend)
        return
    if args.only in (None, "throughput"):
        asyncio.run(throughput(args.events, args.profile))
    if args.only in (None, "e2e"):
        asyncio.run(e2e(args.rate, args.seconds))


if __name__ == "__main__":
    main()
