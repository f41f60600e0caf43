"""The fault scenarios, each at a quick scale (`make test`) or a long one (benchmarks/faults.py).

Each scenario starts real processes, runs `campaign.Clients` against them, injects its
fault, waits until every stored event is delivered, and returns `Figures` reconciled from
the clients' log, the store and the receiver's log. The expectations beyond the counts
are named `checks`; a test asserts them, the long form records them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from campaign import Clients, Figures, Ledger, Receiving, read_store, reconcile, until_delivered

from pg_cluster import Cluster, leases_of, running, until_leased_by, webhook_toml
from receivers import start_ingestd
from support import ServerProcess, pg_ctl

CONTRADICTED = "no 503 said 'not stored' for a stored event"
FSYNC_CONTRADICTED = "after a failed fsync, no 503 said 'not stored' for a stored event"
HOOK = ("hook-a",)
"""The destinations of the single-process scenarios (the PostgreSQL ones use two)."""
PATIENT = "retry_schedule = [0, 0.5, 1, 1, 1, 2, 2, 2, 5, 5]"
ENOUGH_FOR_AN_OUTAGE = "retry_schedule = [0, 1, 2, 4, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8]"
"""~110 s of retries: a receiver down 60 s is not dead-lettered."""


@dataclass(frozen=True)
class Scale:
    name: str
    serve_crashes: int
    serve_events: int
    serve_rate: float
    pg_rounds: int
    stalls: int
    pg_stops: int
    pg_down: float
    redis_kills: int
    redis_down: float
    disk_full: float
    fsync_fail: float
    receiver_down: float
    rate: float
    """Events/s of the scenarios other than the serve kills."""
    deliver_within: float
    timeout: float
    """Seconds one scenario may take before pytest-timeout stops it."""
    warmup: float
    """Seconds of load before the first fault."""


QUICK = Scale(
    "quick",
    serve_crashes=2,
    serve_events=2_500,
    serve_rate=600,
    pg_rounds=1,
    stalls=1,
    pg_stops=1,
    pg_down=3.0,
    redis_kills=1,
    redis_down=2.0,
    disk_full=3.0,
    fsync_fail=2.0,
    receiver_down=5.0,
    rate=300,
    deliver_within=90,
    timeout=180,
    warmup=1.0,
)
LONG = Scale(
    "long",
    serve_crashes=100,
    serve_events=200_000,
    serve_rate=600,
    pg_rounds=12,
    stalls=5,
    pg_stops=3,
    pg_down=5.0,
    redis_kills=3,
    redis_down=5.0,
    disk_full=15.0,
    fsync_fail=10.0,
    receiver_down=60.0,
    rate=500,
    deliver_within=420,
    timeout=1500,
    warmup=2.0,
)


def destinations_toml(receiving: Receiving, names: tuple[str, ...], schedule: str) -> str:
    return webhook_toml(receiving.receiver, names).replace(PATIENT, schedule)


def load_text(clients: Clients, extra: str = "") -> str:
    rate = f"{clients.rate:.0f} ev/s" if clients.rate else "closed loop"
    return f"{clients.clients} clients, 1 + {clients.batch}-event batches, {rate}{extra}"


async def settle(
    figures: Figures,
    ledger: Ledger,
    clients: Clients,
    sending: asyncio.Task[None],
    database_url: str,
    receiving: Receiving,
    destinations: tuple[str, ...],
    within: float,
) -> Figures:
    """Stop the clients (their last events answered), wait for delivery, reconcile."""
    clients.stop.set()
    try:
        await asyncio.wait_for(asyncio.shield(sending), 60)
    except TimeoutError:
        clients.give_up.set()
        await sending
        figures.notes.append("clients gave up on events still unanswered after 60 s")
    took = await until_delivered(database_url, len(destinations), within, settle=1.0)
    figures.checks["every stored event delivered in time"] = took is not None
    stored, deliveries = await asyncio.to_thread(read_store, database_url)
    ledger.close()
    reconcile(figures, ledger, stored, deliveries, receiving, destinations)
    figures.checks["every event answered 202 or duplicate in the end"] = figures.unanswered == 0
    figures.checks[CONTRADICTED] = figures.contradicted == 0
    return figures


@contextlib.asynccontextmanager
async def receiving_hook() -> AsyncIterator[Receiving]:
    receiving = await Receiving().start()
    try:
        yield receiving
    finally:
        await receiving.stop()


def process_alive(proc: ServerProcess) -> bool:
    return proc.proc is not None and proc.proc.poll() is None


# -- kill -9 of `ingestd serve` every 2-4 s (SQLite) ---------------------------------------


async def serve_kills(tmp: Path, scale: Scale) -> Figures:
    async with receiving_hook() as receiving:
        toml = destinations_toml(receiving, HOOK, PATIENT)
        server = await start_ingestd(tmp, toml, INGESTD_LEASE_SECONDS="1")
        ledger = Ledger(tmp / "client.jsonl")
        clients = Clients(ledger, [server.url], rate=scale.serve_rate, cut_short=50)
        clients.at_least = scale.serve_events
        figures = Figures("kill -9 of serve every 2-4 s (SQLite)", load_text(clients))
        start = time.monotonic()
        sending = asyncio.create_task(clients.run())
        try:
            for _ in range(scale.serve_crashes):
                await asyncio.sleep(random.uniform(2.0, 4.0))
                killed = time.monotonic()
                server.kill()
                figures.faults += 1
                await server.start(timeout=60)
                await wait_until(lambda k=killed: ledger.first(202, after=k) is not None, 30)
                figures.recover_s.append((ledger.first(202, after=killed) or killed) - killed)
            await settle(
                figures, ledger, clients, sending, server.database_url, receiving, HOOK,
                scale.deliver_within,
            )  # fmt: skip
        finally:
            clients.give_up.set()
            await server.stop()
        figures.load += f", {figures.sent:,} events"
        figures.checks["only 202/200/207 answers, or no answer"] = set(ledger.statuses) <= {
            0, 200, 202, 207
        }  # fmt: skip
        figures.seconds = time.monotonic() - start
        return figures


async def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


# -- PostgreSQL: API and worker processes killed, a worker stalled, the server stopped -----


async def pg_kills(tmp: Path, pg_url: str, scale: Scale) -> Figures:
    async with receiving_hook() as receiving:
        names = ("hook-a", "hook-b")
        cluster = Cluster(
            tmp, pg_url, destinations_toml(receiving, names, PATIENT),
            apis=2, workers=2, INGESTD_LEASE_SECONDS="2",
        )  # fmt: skip
        async with running(cluster):
            ledger = Ledger(tmp / "client.jsonl")
            clients = Clients(ledger, cluster.urls, rate=scale.rate)
            figures = Figures(
                "kill -9 of an API and a worker process every 2-4 s (PostgreSQL, 2 + 2)",
                load_text(clients),
            )
            start = time.monotonic()
            sending = asyncio.create_task(clients.run())
            try:
                for _ in range(scale.pg_rounds):
                    await asyncio.sleep(random.uniform(2.0, 4.0))
                    api = random.choice(cluster.apis)
                    worker = random.choice(cluster.workers)
                    killed = time.monotonic()
                    api.kill()
                    worker.kill()
                    figures.faults += 2
                    await asyncio.sleep(0.5)
                    await asyncio.gather(cluster.restart(api), cluster.restart(worker))
                    figures.recover_s.append(time.monotonic() - killed)
                await settle(
                    figures, ledger, clients, sending, pg_url, receiving, names,
                    scale.deliver_within,
                )  # fmt: skip
            finally:
                clients.give_up.set()
        figures.notes.append("recovery: kill to both processes restarted and ready")
        figures.load += f", {figures.sent:,} events"
        figures.seconds = time.monotonic() - start
        return figures


async def worker_stalls(tmp: Path, pg_url: str, scale: Scale) -> Figures:
    async with receiving_hook() as receiving:
        cluster = Cluster(
            tmp, pg_url, destinations_toml(receiving, HOOK, PATIENT),
            apis=1, workers=2, INGESTD_LEASE_SECONDS="1.5",
        )  # fmt: skip
        async with running(cluster):
            ledger = Ledger(tmp / "client.jsonl")
            clients = Clients(ledger, cluster.urls, rate=scale.rate)
            figures = Figures(
                "a worker SIGSTOPped for 3 leases (1.5 s) while it holds jobs (PostgreSQL)",
                load_text(clients),
            )
            start = time.monotonic()
            sending = asyncio.create_task(clients.run())
            try:
                taken_every_time = True
                for _ in range(scale.stalls):
                    await asyncio.sleep(1.5)
                    stalled = random.choice(cluster.workers)
                    assert stalled.proc is not None
                    await until_leased_by(pg_url, stalled.proc.pid)
                    stalled.signal(signal.SIGSTOP)
                    stopped = time.monotonic()
                    figures.faults += 1
                    try:
                        # Stopped for at least three leases, and until its jobs are taken.
                        taken = await wait_async(
                            lambda p=stalled.proc.pid: leases_held(pg_url, p, none=True), 15
                        )
                        if taken:
                            figures.recover_s.append(time.monotonic() - stopped)
                        await asyncio.sleep(max(0.0, stopped + 4.5 - time.monotonic()))
                    finally:
                        stalled.signal(signal.SIGCONT)
                    taken_every_time = taken_every_time and taken
                figures.checks["the other worker took the stalled one's jobs within 15 s"] = (
                    taken_every_time
                )
                await settle(
                    figures, ledger, clients, sending, pg_url, receiving, HOOK,
                    scale.deliver_within,
                )  # fmt: skip
                figures.checks["the stalled workers lived on"] = all(
                    process_alive(w) for w in cluster.workers
                )
            finally:
                clients.give_up.set()
        figures.notes.append("recovery: SIGSTOP to no job leased by the stalled worker")
        figures.load += f", {figures.sent:,} events"
        figures.seconds = time.monotonic() - start
        return figures


async def leases_held(pg_url: str, pid: int, *, none: bool = False) -> bool:
    held = await asyncio.to_thread(leases_of, pg_url, pid)
    return held == 0 if none else held > 0


async def wait_async(check: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


async def pg_stops(tmp: Path, pg_url: str, scale: Scale) -> Figures:
    """PostgreSQL `stop -m immediate` under load, then started again (always, in finally)."""
    async with receiving_hook() as receiving:
        cluster = Cluster(
            tmp, pg_url, destinations_toml(receiving, HOOK, PATIENT),
            apis=2, workers=1, INGESTD_LEASE_SECONDS="2",
        )  # fmt: skip
        async with running(cluster):
            ledger = Ledger(tmp / "client.jsonl")
            clients = Clients(ledger, cluster.urls, rate=scale.rate)
            figures = Figures(
                f"PostgreSQL stopped -m immediate for {scale.pg_down:.0f} s (2 APIs, 1 worker)",
                load_text(clients),
            )
            start = time.monotonic()
            sending = asyncio.create_task(clients.run())
            slowest_503 = 0.0
            try:
                for _ in range(scale.pg_stops):
                    await asyncio.sleep(scale.warmup)
                    try:
                        await asyncio.to_thread(pg_ctl, "stop")
                        figures.faults += 1
                        await asyncio.sleep(scale.pg_down)
                    finally:
                        await asyncio.to_thread(pg_ctl, "start")
                    started = time.monotonic()
                    back = [
                        await wait_until(
                            lambda u=url, t=started: clients.first_for(u, 202, t) is not None, 15
                        )
                        for url in cluster.urls
                    ]
                    recovery = (
                        max((clients.first_for(u, 202, started) or started) for u in cluster.urls)
                        - started
                    )
                    recovered_in_time = all(back) and recovery < 5.0
                    figures.checks["every API process answered 202 within 5 s"] = (
                        recovered_in_time
                        and figures.checks.get("every API process answered 202 within 5 s", True)
                    )
                    figures.recover_s.append(recovery)
                slowest_503 = clients.slowest(503)
                await settle(
                    figures, ledger, clients, sending, pg_url, receiving, HOOK,
                    scale.deliver_within,
                )  # fmt: skip
                figures.checks["no process exited"] = all(
                    process_alive(p) for p in cluster.apis + cluster.workers
                )
            finally:
                clients.give_up.set()
        figures.checks["only 202/207/503 answers, or no answer"] = set(ledger.statuses) <= {
            0, 202, 207, 503
        }  # fmt: skip
        figures.checks["every 503 has Retry-After and a detail"] = clients.bad_503 == 0
        figures.checks["every 503 answered within 2 s"] = slowest_503 < 2.0
        figures.notes.append(
            f"recovery: PostgreSQL started to a 202 from every API; slowest 503 {slowest_503:.2f} s"
        )
        figures.load += f", {figures.sent:,} events"
        figures.seconds = time.monotonic() - start
        return figures


# -- Redis killed while it holds the shared rate limits ------------------------------------

REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1",
    "--port", "6379", "--save", "", "--appendonly", "no",
]  # fmt: skip
"""The restart command of DESIGN.md."""


def redis_pid() -> int:
    out = subprocess.run(
        ["redis-cli", "-p", "6379", "info", "server"],
        capture_output=True, text=True, timeout=10, check=True,
    ).stdout  # fmt: skip
    return int(next(ln for ln in out.splitlines() if ln.startswith("process_id:")).split(":")[1])


def redis_start() -> None:
    subprocess.run(REDIS_START, check=True, capture_output=True, timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        done = subprocess.run(["redis-cli", "-p", "6379", "ping"], capture_output=True, text=True)
        if done.stdout.strip() == "PONG":
            return
        time.sleep(0.05)
    raise RuntimeError("redis-server did not answer PING after its restart")


async def redis_kills(tmp: Path, pg_url: str, scale: Scale, fail: str = "open") -> Figures:
    async with receiving_hook() as receiving:
        cluster = Cluster(
            tmp, pg_url, destinations_toml(receiving, HOOK, PATIENT), apis=2, workers=1,
            INGESTD_RATE_LIMIT=str(scale.rate * 0.6), INGESTD_RATE_LIMIT_BURST="50",
            INGESTD_RATE_LIMIT_URL="redis://127.0.0.1:6379/15",
            INGESTD_RATE_LIMIT_PREFIX=f"ingestd-faults:{os.getpid()}:{time.time_ns()}:",
            INGESTD_RATE_LIMIT_FAIL=fail,
        )  # fmt: skip
        async with running(cluster):
            ledger = Ledger(tmp / "client.jsonl")
            clients = Clients(ledger, cluster.urls, rate=scale.rate)
            figures = Figures(
                f"Redis killed -9 for {scale.redis_down:.0f} s while it holds the shared "
                f"limit (2 APIs, limit {scale.rate * 0.6:.0f} ev/s, fail {fail})",
                load_text(clients),
            )
            start = time.monotonic()
            sending = asyncio.create_task(clients.run())
            during: list[int] = []
            try:
                for _ in range(scale.redis_kills):
                    await asyncio.sleep(scale.warmup)
                    limited_before = ledger.count(429, start, time.monotonic())
                    try:
                        os.kill(redis_pid(), signal.SIGKILL)
                        killed = time.monotonic()
                        figures.faults += 1
                        await asyncio.sleep(scale.redis_down)
                    finally:
                        await asyncio.to_thread(redis_start)
                    restarted = time.monotonic()
                    during += [s for t, s in ledger.timeline if killed + 0.2 < t < restarted]
                    shared = await wait_until(
                        lambda r=restarted: ledger.first(429, after=r) is not None, 15
                    )
                    figures.checks["the shared limit came back (429s again)"] = shared and (
                        figures.checks.get("the shared limit came back (429s again)", True)
                    )
                    figures.checks["the limit held before the kill"] = limited_before > 0
                    figures.recover_s.append((ledger.first(429, after=restarted) or 0) - restarted)
                await settle(
                    figures, ledger, clients, sending, pg_url, receiving, HOOK,
                    scale.deliver_within,
                )  # fmt: skip
            finally:
                clients.give_up.set()
        allowed = {202, 207} if fail == "open" else {503}
        figures.checks[f"during the outage only {sorted(allowed)} or 429 (sent before)"] = (
            set(during) - {429} <= allowed
        )
        figures.checks["only 202/207/429/503 answers"] = set(ledger.statuses) <= {
            202, 207, 429, 503
        }  # fmt: skip
        figures.notes.append(
            f"answers during the outage: {dict(sorted(_count(during).items()))}; "
            "recovery: Redis restarted to the first 429 (the shared limit enforced again)"
        )
        figures.load += f", {figures.sent:,} events"
        figures.seconds = time.monotonic() - start
        return figures


def _count(statuses: list[int]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for s in statuses:
        counts[s] = counts.get(s, 0) + 1
    return counts


# -- the disk full, fsync failing (SQLite) --------------------------------------------------


def can_mount() -> bool:
    return os.geteuid() == 0 and Path("/proc/filesystems").read_text().find("tmpfs") >= 0


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> int:
    """Write a file until the filesystem is full; the bytes written."""
    written = 0
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for size in (1 << 20, 64 << 10, 4 << 10, 512):  # down to the last few bytes
            block = b"\0" * size
            with contextlib.suppress(OSError):
                while True:
                    written += os.write(fd, block)
    finally:
        os.close(fd)
    return written


async def ready_answers(url: str, until: asyncio.Event, into: list[int]) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        while not until.is_set():
            try:
                into.append((await http.get(url + "/ready")).status_code)
            except httpx.HTTPError:
                into.append(0)
            await asyncio.sleep(0.25)


async def disk_full(tmp: Path, scale: Scale) -> Figures:
    with small_tmpfs(tmp / "disk", "24m") as disk:
        async with receiving_hook() as receiving:
            toml = destinations_toml(receiving, HOOK, PATIENT)
            server = await start_ingestd(
                tmp, toml, INGESTD_DATABASE_URL=f"sqlite:///{disk}/ingestd.db",
                INGESTD_LEASE_SECONDS="2",
            )  # fmt: skip
            database_url = f"sqlite:///{disk}/ingestd.db"
            ledger = Ledger(tmp / "client.jsonl")
            clients = Clients(ledger, [server.url], rate=scale.rate)
            figures = Figures(
                f"disk full for {scale.disk_full:.0f} s (SQLite on a 24 MiB tmpfs)",
                load_text(clients),
            )
            start = time.monotonic()
            sending = asyncio.create_task(clients.run())
            ready: list[int] = []
            try:
                await asyncio.sleep(scale.warmup)
                pid = server.proc.pid if server.proc else None
                filled = await asyncio.to_thread(fill, disk)
                full = time.monotonic()
                figures.faults += 1
                probe = asyncio.Event()
                probing = asyncio.create_task(ready_answers(server.url, probe, ready))
                await asyncio.sleep(scale.disk_full)
                probe.set()
                await probing
                (disk / "filler").unlink()
                freed = time.monotonic()
                back = await wait_until(lambda: ledger.first(202, after=freed) is not None, 15)
                figures.recover_s.append((ledger.first(202, after=freed) or freed) - freed)
                figures.checks["202s again within 15 s of space returning, no restart"] = (
                    back and process_alive(server) and server.proc is not None
                    and server.proc.pid == pid
                )  # fmt: skip
                while_full = [s for t, s in ledger.timeline if full + 0.5 < t < freed]
                figures.checks["503s while the disk was full"] = 503 in while_full
                figures.checks["/ready says 503 while the disk is full"] = bool(ready) and (
                    200 not in ready[2:]
                )
                figures.notes.append(
                    f"filled {filled / 2**20:.1f} MiB; answers while full: "
                    f"{dict(sorted(_count(while_full).items()))}; /ready while full: "
                    f"{dict(sorted(_count(ready).items()))}"
                )
                await settle(
                    figures, ledger, clients, sending, database_url, receiving, HOOK,
                    scale.deliver_within,
                )  # fmt: skip
            finally:
                clients.give_up.set()
                await server.stop()
        figures.checks["only 202/207/503 answers, or no answer"] = set(ledger.statuses) <= {
            0, 202, 207, 503
        }  # fmt: skip
        figures.notes.append("recovery: space returned to the first 202")
        figures.load += f", {figures.sent:,} events"
        figures.seconds = time.monotonic() - start
        return figures


@contextlib.asynccontextmanager
async def failing_fsync(pid: int, log: Path) -> AsyncIterator[None]:
    """strace attached to every thread of `pid`, failing fsync/fdatasync with EIO."""
    tracer = subprocess.Popen(
        [
            "strace", "-f", "-qq", "-p", str(pid), "-e", "trace=fsync,fdatasync",
            "-e", "inject=fsync,fdatasync:error=EIO", "-o", str(log),
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while "EIO" not in (log.read_text() if log.exists() else ""):
            if time.monotonic() > deadline or tracer.poll() is not None:
                raise RuntimeError("strace never injected a failure")
            await asyncio.sleep(0.02)
        yield
    finally:
        tracer.send_signal(signal.SIGTERM)  # strace detaches; the process runs on
        tracer.wait(10)


async def fsync_fails(tmp: Path, scale: Scale) -> Figures:
    async with receiving_hook() as receiving:
        toml = destinations_toml(receiving, HOOK, PATIENT)
        server = await start_ingestd(tmp, toml, INGESTD_LEASE_SECONDS="2")
        ledger = Ledger(tmp / "client.jsonl")
        clients = Clients(ledger, [server.url], rate=scale.rate)
        figures = Figures(
            f"fsync/fdatasync fail with EIO for {scale.fsync_fail:.0f} s (strace inject; "
            "SQLite FULL); then again for 2 s, ended by kill -9 and a restart",
            load_text(clients),
        )
        start = time.monotonic()
        sending = asyncio.create_task(clients.run())
        try:
            await asyncio.sleep(scale.warmup)
            assert server.proc is not None
            async with failing_fsync(server.proc.pid, tmp / "strace.log"):
                failing = time.monotonic()
                figures.faults += 1
                await asyncio.sleep(scale.fsync_fail)
            healed = time.monotonic()
            during = [s for t, s in ledger.timeline if failing < t < healed]
            figures.checks["no 202 while fsync fails"] = 202 not in during
            back = await wait_until(lambda: ledger.first(202, after=healed) is not None, 10)
            figures.checks["the process lived through it"] = process_alive(server)
            figures.notes.append(
                f"answers while fsync failed: {dict(sorted(_count(during).items()))}; "
                + (
                    f"202s again {(ledger.first(202, after=healed) or 0) - healed:.2f} s "
                    "after the failures stopped, without a restart"
                    if back
                    else "no 202 within 10 s of the failures stopping"
                )
            )
            if back:
                figures.recover_s.append((ledger.first(202, after=healed) or healed) - healed)
            # Then fsync fails again and the process dies while it does (kill -9, as a
            # panic would): what reached the WAL is what recovery replays.
            async with failing_fsync(server.proc.pid, tmp / "strace-2.log"):
                again = time.monotonic()
                figures.faults += 1
                await asyncio.sleep(min(2.0, scale.fsync_fail))
                server.kill()
                killed = time.monotonic()
            figures.checks["no 202 while fsync fails"] = 202 not in during and not any(
                s == 202 for t, s in ledger.timeline if again < t < killed
            )
            await server.start(timeout=60)
            await settle(
                figures, ledger, clients, sending, server.database_url, receiving, HOOK,
                scale.deliver_within,
            )  # fmt: skip
        finally:
            clients.give_up.set()
            await server.stop()
        # Issue 14 item 15 (harden): after a failed fsync the WAL may hold what a 503 denied.
        figures.checks[FSYNC_CONTRADICTED] = figures.checks.pop(CONTRADICTED)
        figures.notes.append("recovery: failures stopped to the first 202")
        figures.load += f", {figures.sent:,} events"
        figures.seconds = time.monotonic() - start
        return figures


# -- a webhook receiver failing ------------------------------------------------------------


async def receiver_down(tmp: Path, scale: Scale) -> Figures:
    async with receiving_hook() as receiving:
        toml = destinations_toml(receiving, HOOK, ENOUGH_FOR_AN_OUTAGE)
        server = await start_ingestd(
            tmp, toml, INGESTD_LEASE_SECONDS="5", INGESTD_BREAKER_COOLDOWN="5"
        )
        ledger = Ledger(tmp / "client.jsonl")
        clients = Clients(ledger, [server.url], rate=scale.rate)
        figures = Figures(
            f"webhook receiver answering 503 for {scale.receiver_down:.0f} s "
            "(breaker cooldown 5 s)",
            load_text(clients),
        )
        start = time.monotonic()
        sending = asyncio.create_task(clients.run())
        try:
            await asyncio.sleep(scale.warmup)
            receiving.failing = True
            figures.faults += 1
            await asyncio.sleep(scale.receiver_down)
            receiving.failing = False
            back = time.monotonic()
            clients.stop.set()
            await asyncio.wait_for(asyncio.shield(sending), 60)
            took = await until_delivered(server.database_url, 1, scale.deliver_within)
            if took is not None:
                figures.recover_s.append(time.monotonic() - back)
            await settle(
                figures, ledger, clients, sending, server.database_url, receiving, HOOK,
                scale.deliver_within,
            )  # fmt: skip
        finally:
            clients.give_up.set()
            await server.stop()
        _, deliveries = read_store(server.database_url)
        figures.checks["nothing dead-lettered"] = not any(d[3] == "dead" for d in deliveries)
        figures.notes.append(
            f"{receiving.failed:,} attempts answered 503; "
            "recovery: receiver back to every delivery succeeded"
        )
        figures.load += f", {figures.sent:,} events"
        figures.seconds = time.monotonic() - start
        return figures
