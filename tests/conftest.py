"""Shared fixtures: temporary SQLite files, fresh PostgreSQL databases, real servers."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from services import SERVICES, reachable
from support import ServerProcess, free_port, pg_database

# A proxy in the shell that runs the tests must not carry the loopback receivers' traffic
# (the servers started here inherit this environment): the proxy tests name their own.
for _name in ("http_proxy", "https_proxy", "no_proxy"):
    os.environ.pop(_name, None)
    os.environ.pop(_name.upper(), None)
for _name in ("INGESTD_OUTBOUND_PROXY", "INGESTD_OUTBOUND_NO_PROXY", "INGESTD_CA_BUNDLE"):
    os.environ.pop(_name, None)


def require(name: str) -> None:
    host, port, start = SERVICES[name]
    if not reachable(host, port):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not reachable at {host}:{port} (start: {start})")
        pytest.skip(f"{name} is not reachable at {host}:{port}")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/ingestd.db"


@pytest.fixture
def pg_url() -> Iterator[str]:
    require("PostgreSQL")
    with pg_database() as url:
        yield url


@pytest.fixture
def redis_url() -> str:
    require("Redis")
    return "redis://127.0.0.1:6379/15"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ServerProcess]:
    """A real `ingestd serve` on a free port with its own SQLite file."""
    proc = ServerProcess(tmp_path, port=free_port())
    await proc.start()
    try:
        yield proc
    finally:
        await proc.stop()
