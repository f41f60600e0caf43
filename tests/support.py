"""Helpers for tests: free ports, real server processes, throwaway PostgreSQL databases."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
INGESTD = str(Path(sys.executable).parent / "ingestd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    import psycopg

    name = f"ingestd_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class ServerProcess:
    """`ingestd <command>` as a real subprocess, with its own data directory."""

    def __init__(
        self,
        tmp: Path,
        *,
        port: int,
        command: str = "serve",
        env: dict[str, str] | None = None,
        database_url: str | None = None,
    ) -> None:
        self.tmp = tmp
        self.port = port
        self.command = command
        self.url = f"http://127.0.0.1:{port}"
        self.database_url = database_url or f"sqlite:///{tmp}/ingestd.db"
        self.env = {
            **os.environ,
            "INGESTD_DATABASE_URL": self.database_url,
            "INGESTD_POLL_INTERVAL": "0.2",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = tmp / f"server-{port}.log"

    async def start(self, timeout: float = 20.0) -> None:
        args = [INGESTD, self.command]
        if self.command in ("serve", "api"):
            args += ["--host", "127.0.0.1", "--port", str(self.port)]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=log)
        if self.command in ("serve", "api"):
            await self.wait_ready(timeout)

    async def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"server exited early:\n{self.log.read_text()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/ready")).status_code == 200:
                        return
                await asyncio.sleep(0.05)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.log.read_text()}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    async def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.proc.poll() is None:
            self.kill()
        return self.proc.returncode

    def logs(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


async def wait_for(predicate: Any, timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll an async predicate until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {value!r})")
        await asyncio.sleep(interval)
