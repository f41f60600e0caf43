"""Helpers for tests: free ports, real server processes, throwaway PostgreSQL databases."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from ingestd.bench.process import IngestdProcess, free_port

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
INGESTD = str(Path(sys.executable).parent / "ingestd")


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


def pg_ctl(action: str) -> None:
    """Stop (`-m immediate`: like a crash) or start the local PostgreSQL cluster. Tests that
    stop it must start it again in a `finally`: other test runs share the server."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    args = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action]
    if action == "stop":
        args += ["-m", "immediate"]
    subprocess.run(args, check=True, capture_output=True, timeout=60)


class ServerProcess(IngestdProcess):
    """`ingestd <command>` as a real subprocess whose files live in `tmp` (the harness of
    ingestd.bench.process, shared with the benchmarks; tests use its asyncio methods)."""

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
        self.database_url = database_url or f"sqlite:///{tmp}/ingestd.db"
        super().__init__(
            command,
            port=port,
            log=tmp / f"server-{port}.log",
            env={
                "INGESTD_DATABASE_URL": self.database_url,
                "INGESTD_POLL_INTERVAL": "0.2",
                **(env or {}),
            },
        )

    async def start(self, timeout: float = 20.0) -> None:
        await super().start(timeout)


@contextlib.contextmanager
def running_server(tmp: Path, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """A real server for a module-scoped fixture (sync context: started and stopped with
    asyncio.run, outside the tests' event loops)."""
    proc = ServerProcess(tmp, port=free_port(), env=env)
    asyncio.run(proc.start())
    try:
        yield proc
    finally:
        asyncio.run(proc.stop())


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


# -- handler destinations and servers configured with them ----------------------------

TESTS_DIR = Path(__file__).parent


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def write_config(
    path: Path, destinations: Any = (), settings: dict[str, Any] | None = None
) -> Path:
    """A TOML file for INGESTD_CONFIG with `[[destinations]]` tables."""
    lines: list[str] = []
    if settings:
        lines.append("[settings]")
        lines += [f"{k} = {toml_value(v)}" for k, v in settings.items()]
    for dest in destinations:
        lines.append("[[destinations]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in dest.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def handler_env(tmp: Path, destinations: Any = (), **env: str) -> dict[str, str]:
    """Env for a server whose destinations are handlers in tests/handlers (importable)."""
    pythonpath = os.pathsep.join(p for p in (str(TESTS_DIR), os.environ.get("PYTHONPATH")) if p)
    result = {"PYTHONPATH": pythonpath, "INGESTD_TEST_DIR": str(tmp), **env}
    if destinations:
        result["INGESTD_CONFIG"] = str(write_config(tmp / "ingestd.toml", destinations))
    return result


async def all_events(client: httpx.AsyncClient, **filters: str) -> list[dict[str, Any]]:
    """Every stored event matching the filters, following next_cursor."""
    events: list[dict[str, Any]] = []
    params: dict[str, str] = {"limit": "1000", **filters}
    while True:
        response = await client.get("/events", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        events += page["events"]
        if page["next_cursor"] is None:
            return events
        params["cursor"] = page["next_cursor"]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30.0) -> Any:
    """`ingestd <args>` to completion; returns the CompletedProcess (text mode)."""
    return subprocess.run(
        [INGESTD, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
