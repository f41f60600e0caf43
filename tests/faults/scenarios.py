"""The fault scenarios, each at a quick scale (`make test`) or a long one (benchmarks/faults.py).

Each scenario starts real processes, runs `campaign.Clients` against them, injects its
fault, waits until every stored event is delivered, and returns `Figures` reconciled from
the clients' log, the store and the receiver's log. The expectations beyond the counts
are named `checks`; a test asserts them, the long form records them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import signal
import subprocess
import time
from collections import Counter
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
READY_WHILE_FULL = "/ready says 503 while the disk is full"
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
    serve_rate=1000,
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
    serve_rate=1500,
    pg_rounds=8,
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


def load_text(clients: Clients) -> str:
    rate = f"{clients.rate:.0f} ev/s" if clients.rate else "closed loop"
    return f"{clients.clients} clients, 1 + {clients.batch}-event batches, {rate}"


class Run:
    """One scenario's campaign: the receiver and its log, the clients and theirs, the figures."""

    def __init__(
        self, tmp: Path, scale: Scale, scenario: str, destinations: tuple[str, ...]
    ) -> None:
        self.scale = scale
        self.destinations = destinations
        self.receiving = Receiving()
        self.ledger = Ledger(tmp / "client.jsonl")
        self.figures = Figures(scenario, "")
        self.clients = Clients(self.ledger, [])
        self.sending: asyncio.Task[None] | None = None
        self.start = time.monotonic()

    def toml(self, schedule: str = PATIENT) -> str:
        return destinations_toml(self.receiving, self.destinations, schedule)

    def send(self, urls: list[str], rate: float, **options: int) -> Clients:
        """Start the clients on `urls`."""
        self.clients = Clients(self.ledger, urls, rate=rate, **options)
        self.figures.load = load_text(self.clients)
        self.sending = asyncio.create_task(self.clients.run())
        return self.clients

    def check(self, name: str, ok: bool) -> None:
        """Record a check that must hold every time it is made."""
        self.figures.checks[name] = self.figures.checks.get(name, True) and ok

    def answers_only(self, allowed: set[int]) -> None:
        """Every answer had one of these statuses (0: no answer)."""
        names = "/".join(str(s) for s in sorted(allowed - {0}))
        tail = ", or no answer" if 0 in allowed else ""
        self.check(f"only {names} answers{tail}", set(self.ledger.statuses) <= allowed)

    def between(self, start: float, end: float) -> list[int]:
        """The statuses answered between `start` and `end` (monotonic times)."""
        return [s for t, s, _ in self.ledger.timeline if start < t < end]

    async def settle(self, database_url: str) -> Figures:
        """Stop the clients (their last events answered), wait for delivery, reconcile."""
        f = self.figures
        self.clients.stop.set()
        assert self.sending is not None
        try:
            await asyncio.wait_for(asyncio.shield(self.sending), 60)
        except TimeoutError:
            self.clients.give_up.set()
            await self.sending
            f.notes.append("clients gave up on events still unanswered after 60 s")
        n = len(self.destinations)
        took = await until_delivered(database_url, n, self.scale.deliver_within, settle=1.0)
        self.check("every stored event delivered in time", took is not None)
        stored, deliveries = await asyncio.to_thread(read_store, database_url)
        self.ledger.close()
        reconcile(f, self.ledger, stored, deliveries, self.receiving, self.destinations)
        self.check("every event answered 202 or duplicate in the end", f.unanswered == 0)
        self.check(CONTRADICTED, f.contradicted == 0)
        return f


@contextlib.asynccontextmanager
async def campaign(
    tmp: Path, scale: Scale, scenario: str, destinations: tuple[str, ...] = HOOK
) -> AsyncIterator[Run]:
    run = Run(tmp, scale, scenario, destinations)
    await run.receiving.start()
    try:
        yield run
    finally:
        run.clients.stop.set()
        run.clients.give_up.set()
        if run.sending is not None:
            await asyncio.gather(run.sending, return_exceptions=True)
        run.ledger.close()
        await run.receiving.stop()
    run.figures.load += f", {run.figures.sent:,} events"
    run.figures.seconds = time.monotonic() - run.start


def process_alive(proc: ServerProcess) -> bool:
    return proc.proc is not None and proc.proc.poll() is None


async def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def wait_async(check: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


def _count(statuses: list[int]) -> dict[int, int]:
    return dict(sorted(Counter(statuses).items()))


# -- kill -9 of `ingestd serve` every 2-4 s (SQLite) ---------------------------------------


async def serve_kills(tmp: Path, scale: Scale) -> Figures:
    async with campaign(tmp, scale, "kill -9 of serve every 2-4 s (SQLite)") as run:
        server = await start_ingestd(tmp, run.toml(), INGESTD_LEASE_SECONDS="1")
        try:
            clients = run.send([server.url], scale.serve_rate, cut_short=50, batch=50)
            clients.at_least = scale.serve_events
            ledger = run.ledger
            for _ in range(scale.serve_crashes):
                await asyncio.sleep(random.uniform(2.0, 4.0))
                killed = time.monotonic()
                server.kill()
                run.figures.faults += 1
                await server.start(timeout=60)
                await wait_until(lambda k=killed: ledger.first(202, after=k) is not None, 30)
                run.figures.recover_s.append((ledger.first(202, after=killed) or killed) - killed)
            await run.settle(server.database_url)
        finally:
            await server.stop()
        run.answers_only({0, 200, 202, 207})
        run.figures.notes.append("recovery: kill to the first 202 (the restart included)")
        return run.figures


# -- PostgreSQL: API and worker processes killed, a worker stalled, the server stopped -----


async def pg_kills(tmp: Path, pg_url: str, scale: Scale) -> Figures:
    title = "kill -9 of an API and a worker process every 2-4 s (PostgreSQL, 2 + 2)"
    async with campaign(tmp, scale, title, ("hook-a", "hook-b")) as run:
        cluster = Cluster(tmp, pg_url, run.toml(), apis=2, workers=2, INGESTD_LEASE_SECONDS="2")
        async with running(cluster):
            run.send(cluster.urls, scale.rate)
            for _ in range(scale.pg_rounds):
                await asyncio.sleep(random.uniform(2.0, 4.0))
                api, worker = random.choice(cluster.apis), random.choice(cluster.workers)
                killed = time.monotonic()
                api.kill()
                worker.kill()
                run.figures.faults += 2
                await asyncio.sleep(0.5)
                await asyncio.gather(cluster.restart(api), cluster.restart(worker))
                run.figures.recover_s.append(time.monotonic() - killed)
            await run.settle(pg_url)
        run.figures.notes.append("recovery: kill to both processes restarted and ready")
        return run.figures


async def leases_held(pg_url: str, pid: int, *, none: bool = False) -> bool:
    held = await asyncio.to_thread(leases_of, pg_url, pid)
    return held == 0 if none else held > 0


async def worker_stalls(tmp: Path, pg_url: str, scale: Scale) -> Figures:
    title = "a worker SIGSTOPped for 3 leases (1.5 s) while it holds jobs (PostgreSQL)"
    async with campaign(tmp, scale, title) as run:
        cluster = Cluster(tmp, pg_url, run.toml(), apis=1, workers=2, INGESTD_LEASE_SECONDS="1.5")
        async with running(cluster):
            run.send(cluster.urls, scale.rate)
            for _ in range(scale.stalls):
                await asyncio.sleep(1.5)
                stalled = random.choice(cluster.workers)
                pid = stalled.pid
                await until_leased_by(pg_url, pid)
                stalled.signal(signal.SIGSTOP)
                stopped = time.monotonic()
                run.figures.faults += 1
                try:
                    # Stopped for at least three leases, and until its jobs are taken.
                    taken = await wait_async(lambda p=pid: leases_held(pg_url, p, none=True), 15)
                    if taken:
                        run.figures.recover_s.append(time.monotonic() - stopped)
                    await asyncio.sleep(max(0.0, stopped + 4.5 - time.monotonic()))
                finally:
                    stalled.signal(signal.SIGCONT)
                run.check("the other worker took the stalled one's jobs within 15 s", taken)
            await run.settle(pg_url)
            run.check("the stalled workers lived on", all(map(process_alive, cluster.workers)))
        run.figures.notes.append("recovery: SIGSTOP to no job leased by the stalled worker")
        return run.figures


async def pg_stops(tmp: Path, pg_url: str, scale: Scale) -> Figures:
    """PostgreSQL `stop -m immediate` under load, then started again (always, in finally)."""
    title = f"PostgreSQL stopped -m immediate for {scale.pg_down:.0f} s (2 APIs, 1 worker)"
    async with campaign(tmp, scale, title) as run:
        cluster = Cluster(tmp, pg_url, run.toml(), apis=2, workers=1, INGESTD_LEASE_SECONDS="2")
        async with running(cluster):
            clients = run.send(cluster.urls, scale.rate)
            for _ in range(scale.pg_stops):
                await asyncio.sleep(scale.warmup)
                try:
                    await asyncio.to_thread(pg_ctl, "stop")
                    run.figures.faults += 1
                    await asyncio.sleep(scale.pg_down)
                finally:
                    await asyncio.to_thread(pg_ctl, "start")
                started = time.monotonic()
                for url in cluster.urls:
                    await wait_until(
                        lambda u=url, t=started: clients.first_for(u, 202, t) is not None, 15
                    )
                firsts = [clients.first_for(u, 202, started) for u in cluster.urls]
                recovery = max((t or math.inf) for t in firsts) - started
                run.check("every API process answered 202 within 5 s", recovery < 5.0)
                run.figures.recover_s.append(min(recovery, 15.0))
            slowest_503 = clients.slowest(503)
            await run.settle(pg_url)
            run.check("no process exited", all(map(process_alive, cluster.apis + cluster.workers)))
        run.answers_only({0, 202, 207, 503})
        run.check("every 503 has Retry-After and a detail", clients.bad_503 == 0)
        run.check("every 503 answered within 2 s", slowest_503 < 2.0)
        run.figures.notes.append(
            f"recovery: PostgreSQL started to a 202 from every API; slowest 503 {slowest_503:.2f} s"
        )
        return run.figures


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
    limit = scale.rate * 0.6
    title = (
        f"Redis killed -9 for {scale.redis_down:.0f} s while it holds the shared limit "
        f"(2 APIs, limit {limit:.0f} ev/s, fail {fail})"
    )
    async with campaign(tmp, scale, title) as run:
        cluster = Cluster(
            tmp, pg_url, run.toml(), apis=2, workers=1,
            INGESTD_RATE_LIMIT=str(limit), INGESTD_RATE_LIMIT_BURST="50",
            INGESTD_RATE_LIMIT_URL="redis://127.0.0.1:6379/15",
            INGESTD_RATE_LIMIT_PREFIX=f"ingestd-faults:{os.getpid()}:{time.time_ns()}:",
            INGESTD_RATE_LIMIT_FAIL=fail,
        )  # fmt: skip
        ledger = run.ledger
        during: list[int] = []
        async with running(cluster):
            run.send(cluster.urls, scale.rate)
            for _ in range(scale.redis_kills):
                await asyncio.sleep(scale.warmup)
                run.check("the limit held before the kill", 429 in run.between(0, math.inf))
                try:
                    os.kill(redis_pid(), signal.SIGKILL)
                    killed = time.monotonic()
                    run.figures.faults += 1
                    await asyncio.sleep(scale.redis_down)
                finally:
                    await asyncio.to_thread(redis_start)
                restarted = time.monotonic()
                during += run.between(killed + 0.2, restarted)
                shared = await wait_until(
                    lambda r=restarted: ledger.first(429, after=r) is not None, 15
                )
                run.check("the shared limit came back (429s again)", shared)
                run.figures.recover_s.append((ledger.first(429, after=restarted) or 0) - restarted)
            await run.settle(pg_url)
        allowed = {202, 207} if fail == "open" else {503}
        run.check(
            f"during the outage only {sorted(allowed)} or 429 (sent before)",
            set(during) - {429} <= allowed,
        )
        run.answers_only({202, 207, 429, 503})
        run.figures.notes.append(
            f"answers during the outage: {_count(during)}; "
            "recovery: Redis restarted to the first 429 (the shared limit enforced again)"
        )
        return run.figures


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
    title = f"disk full for {scale.disk_full:.0f} s (SQLite on a 24 MiB tmpfs)"
    with small_tmpfs(tmp / "disk", "24m") as disk:
        async with campaign(tmp, scale, title) as run:
            database_url = f"sqlite:///{disk}/ingestd.db"
            server = await start_ingestd(
                tmp, run.toml(), INGESTD_DATABASE_URL=database_url, INGESTD_LEASE_SECONDS="2"
            )
            ledger = run.ledger
            ready: list[int] = []
            try:
                run.send([server.url], scale.rate)
                await asyncio.sleep(scale.warmup)
                pid = server.pid
                filled = await asyncio.to_thread(fill, disk)
                full = time.monotonic()
                run.figures.faults += 1
                probe = asyncio.Event()
                probing = asyncio.create_task(ready_answers(server.url, probe, ready))
                await asyncio.sleep(scale.disk_full)
                probe.set()
                await probing
                (disk / "filler").unlink()
                freed = time.monotonic()
                back = await wait_until(lambda: ledger.first(202, after=freed) is not None, 15)
                run.figures.recover_s.append((ledger.first(202, after=freed) or freed) - freed)
                run.check(
                    "202s again within 15 s of space returning, no restart",
                    back and process_alive(server) and server.pid == pid,
                )
                while_full = run.between(full + 0.5, freed)
                run.check("503s while the disk was full", 503 in while_full)
                # Item 14 (harden): readiness must mean "a 202 is possible now".
                run.check(READY_WHILE_FULL, bool(ready) and 200 not in ready[2:])
                run.figures.notes.append(
                    f"filled {filled / 2**20:.1f} MiB; answers while full: {_count(while_full)}; "
                    f"/ready while full: {_count(ready)}"
                )
                await run.settle(database_url)
            finally:
                await server.stop()
        run.answers_only({0, 202, 207, 503})
        run.figures.notes.append("recovery: space returned to the first 202")
        return run.figures


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
    title = (
        f"fsync/fdatasync fail with EIO for {scale.fsync_fail:.0f} s (strace inject; "
        "SQLite FULL); then again for 2 s, ended by kill -9 and a restart"
    )
    async with campaign(tmp, scale, title) as run:
        server = await start_ingestd(tmp, run.toml(), INGESTD_LEASE_SECONDS="2")
        ledger = run.ledger
        try:
            run.send([server.url], scale.rate)
            await asyncio.sleep(scale.warmup)
            async with failing_fsync(server.pid, tmp / "strace.log"):
                failing = time.monotonic()
                run.figures.faults += 1
                await asyncio.sleep(scale.fsync_fail)
            healed = time.monotonic()
            during = run.between(failing, healed)
            back = await wait_until(lambda: ledger.first(202, after=healed) is not None, 10)
            run.check("the process lived through it", process_alive(server))
            if back:
                run.figures.recover_s.append((ledger.first(202, after=healed) or healed) - healed)
            run.figures.notes.append(
                f"answers while fsync failed: {_count(during)}; "
                + (
                    f"202s again {run.figures.recover_s[-1]:.2f} s after the failures "
                    "stopped, without a restart"
                    if back
                    else "no 202 within 10 s of the failures stopping"
                )
            )
            # Then fsync fails again and the process dies while it does (kill -9, as a
            # panic would): what reached the WAL is what recovery replays.
            async with failing_fsync(server.pid, tmp / "strace-2.log"):
                again = time.monotonic()
                run.figures.faults += 1
                await asyncio.sleep(min(2.0, scale.fsync_fail))
                server.kill()
                killed = time.monotonic()
            run.check("no 202 while fsync fails", 202 not in during + run.between(again, killed))
            await server.start(timeout=60)
            await run.settle(server.database_url)
        finally:
            await server.stop()
        # Item 15 (harden): after a failed fsync the WAL may hold what a 503 denied.
        run.figures.checks[FSYNC_CONTRADICTED] = run.figures.checks.pop(CONTRADICTED)
        run.figures.notes.append("recovery: failures stopped to the first 202")
        return run.figures


# -- a webhook receiver failing ------------------------------------------------------------


async def receiver_down(tmp: Path, scale: Scale) -> Figures:
    title = f"webhook receiver answering 503 for {scale.receiver_down:.0f} s (breaker cooldown 5 s)"
    async with campaign(tmp, scale, title) as run:
        server = await start_ingestd(
            tmp, run.toml(ENOUGH_FOR_AN_OUTAGE),
            INGESTD_LEASE_SECONDS="5", INGESTD_BREAKER_COOLDOWN="5",
        )  # fmt: skip
        try:
            clients = run.send([server.url], scale.rate)
            await asyncio.sleep(scale.warmup)
            run.receiving.failing = True
            run.figures.faults += 1
            await asyncio.sleep(scale.receiver_down)
            run.receiving.failing = False
            back = time.monotonic()
            clients.stop.set()
            took = await until_delivered(server.database_url, 1, scale.deliver_within)
            if took is not None:
                run.figures.recover_s.append(time.monotonic() - back)
            await run.settle(server.database_url)
        finally:
            await server.stop()
        _, deliveries = read_store(server.database_url)
        run.check("nothing dead-lettered", not any(d[3] == "dead" for d in deliveries))
        run.figures.notes.append(
            f"{run.receiving.failed:,} attempts answered 503; "
            "recovery: receiver back to every delivery succeeded"
        )
        return run.figures
