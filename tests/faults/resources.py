"""Fault scenarios that starve the store or a destination: the disk full, fsync failing,
a webhook receiver failing (QUICK or LONG scale)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx

from campaign import (
    CONTRADICTED,
    ENOUGH_FOR_AN_OUTAGE,
    FSYNC_CONTRADICTED,
    READY_WHILE_FULL,
    Scale,
    campaign,
    count_of,
    process_alive,
    wait_until,
)
from receivers import start_ingestd
from reconcile import Figures, read_store, until_delivered

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
                    f"filled {filled / 2**20:.1f} MiB; answers while full: {count_of(while_full)}; "
                    f"/ready while full: {count_of(ready)}"
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
                f"answers while fsync failed: {count_of(during)}; "
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
            # strace attaches thread by thread: a commit on a thread not yet traced can still
            # succeed (and be durable). Judge the requests sent once every thread is traced.
            traced = run.sent_between(failing + 0.5, healed) + run.sent_between(again + 0.5, killed)
            run.check("no 202 for a request sent while fsync fails", 202 not in traced)
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
