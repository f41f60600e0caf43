"""Shared fixtures: temporary SQLite files, fresh PostgreSQL databases, real servers."""

from __future__ import annotations

import os
import sys
from collections import Counter
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


# -- `make test` runs the suite on two xdist workers (--dist loadgroup -m "not serial"), then
# the tests marked `serial` alone: those that stop a shared service (PostgreSQL, Redis), the
# fault suite, whose checks judge recovery times on an otherwise quiet machine, and items
# xdist cannot tell apart (schemathesis gives every operation's test one node id).

HEAVY_FIRST = (
    "tests/acceptance/test_examples.py",
    "tests/browser/test_console_browser.py",
    "tests/integration/test_auth_limits.py",
    "tests/integration/test_pg_scale.py",
    "tests/integration/test_delivery.py",
    "tests/integration/test_bench.py",
    "tests/integration/test_refusal_log.py",
    "tests/integration/test_api_keys_lifecycle.py",
    "tests/integration/test_prometheus.py",
    "tests/acceptance/test_offline_docs.py",
    "tests/integration/test_slow_clients.py",
    "tests/integration/test_client_sdk.py",
)
"""The modules that take longest (measured), handed to the workers first so that neither
waits alone on a long one at the end. Only the order: a module missing here still runs."""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under --dist loadgroup a module's tests stay on one worker (its module-scoped servers
    and browser start once); modules marked with one xdist_group share a worker."""
    if not getattr(config.option, "loadgroup", False):
        return  # (the workers collect: xdist sets loadgroup there, and dist to "no")
    # xdist schedules by node id: of several items with one id only one would run.
    ids = Counter(item.nodeid for item in items if item.get_closest_marker("serial") is None)
    if same := sorted(nodeid for nodeid, n in ids.items() if n > 1):
        raise pytest.UsageError(f"items share a node id, mark them serial: {same}")
    root = config.rootpath
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.path.relative_to(root).as_posix()))

    def rank(item: pytest.Item) -> int:
        module = item.path.relative_to(root).as_posix()
        return HEAVY_FIRST.index(module) if module in HEAVY_FIRST else len(HEAVY_FIRST)

    items.sort(key=rank)


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
