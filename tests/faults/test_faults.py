"""The fault suite's quick form: every scenario, bounded, with lost = duplicated = unexpected = 0.

The long form is `benchmarks/faults.py`, which runs the same scenarios at `LONG` scale and
records the figures in docs/RELIABILITY.md. A check that fails because of a known defect
(named in KNOWN with the issue item that owns it) makes the test xfail, never pass; once
the defect is fixed the check passes and the test with it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from campaign import LONG, QUICK
from reconcile import Figures
from resources import can_mount, disk_full, fsync_fails, receiver_down
from scenarios import pg_kills, pg_stops, redis_kills, serve_kills
from stalls import worker_stalls

pytestmark = [pytest.mark.slow, pytest.mark.faults, pytest.mark.serial]
"""serial: `make test` runs these alone, after the rest: two stop a shared service, and the
checks of all of them judge recovery on a machine not also running other tests."""

KNOWN: dict[str, str] = {}
"""Checks that fail today because of a defect another item owns: the test xfails."""

OUTAGES = os.environ.get("CI") == "true" or "1" in (
    os.environ.get("INGESTD_TEST_PG_OUTAGE"),
    os.environ.get("INGESTD_TEST_OUTAGES"),
)
outage = pytest.mark.skipif(
    not OUTAGES,
    reason="stops a shared service: set INGESTD_TEST_OUTAGES=1 (always on in CI)",
)


SCALE = LONG if os.environ.get("INGESTD_FAULTS_SCALE") == "long" else QUICK
"""benchmarks/faults.py sets INGESTD_FAULTS_SCALE=long for the long form."""
RESULTS = os.environ.get("INGESTD_FAULTS_RESULTS")
"""A JSON-lines file each test appends its figures and verdict to (the long form's)."""
LOGS = os.environ.get("INGESTD_FAULTS_LOGS")
"""Where each test's client log and server logs are kept (else in pytest's tmp_path)."""


@pytest.fixture
def tmp(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Path]:
    yield tmp_path
    if LOGS:
        keep = Path(LOGS) / request.node.name
        keep.mkdir(parents=True, exist_ok=True)
        for path in [*tmp_path.glob("*.jsonl"), *tmp_path.glob("*.log")]:
            shutil.copy(path, keep / path.name)


def judge(figures: Figures) -> None:
    violations = figures.violations(KNOWN)
    if figures.faults < 1 or figures.acked == 0:
        violations.append("no fault was injected, or nothing was acknowledged")
    known = figures.known_failures(KNOWN)
    verdict = "fail" if violations else "xfail" if known else "pass"
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[-1].split(" ")[0]
    record = {**figures.as_dict(), "scale": SCALE.name, "verdict": verdict, "test": test}
    record |= {"violations": violations, "known": [f"{n} ({KNOWN.get(n, '')})" for n in known]}
    print(f"\n{json.dumps(record)}")
    if RESULTS:
        with open(RESULTS, "a") as out:
            out.write(json.dumps(record) + "\n")
    assert not violations, (violations, figures.as_dict())
    if known:
        pytest.xfail("; ".join(record["known"]))


@pytest.mark.timeout(SCALE.timeout)
async def test_serve_killed_every_few_seconds(tmp: Path) -> None:
    figures = await serve_kills(tmp, SCALE)
    assert figures.faults == SCALE.serve_crashes
    assert figures.recovered + figures.statuses.get("0", 0) > 0, "no request was ever cut off"
    judge(figures)


@pytest.mark.postgres
@pytest.mark.timeout(SCALE.timeout)
async def test_api_and_worker_processes_killed_on_postgres(tmp: Path, pg_url: str) -> None:
    judge(await pg_kills(tmp, pg_url, SCALE))


@pytest.mark.postgres
@pytest.mark.timeout(SCALE.timeout)
async def test_a_worker_stopped_past_its_lease(tmp: Path, pg_url: str) -> None:
    judge(await worker_stalls(tmp, pg_url, SCALE))


@outage
@pytest.mark.postgres
@pytest.mark.timeout(SCALE.timeout)
async def test_postgres_stopped_immediately(tmp: Path, pg_url: str) -> None:
    if not Path("/etc/postgresql").is_dir():
        pytest.skip("no local PostgreSQL cluster to stop")
    judge(await pg_stops(tmp, pg_url, SCALE))


@outage
@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.timeout(SCALE.timeout)
async def test_redis_killed_while_it_holds_the_shared_limits(
    tmp: Path, pg_url: str, redis_url: str
) -> None:
    judge(await redis_kills(tmp, pg_url, SCALE))


@pytest.mark.timeout(SCALE.timeout)
async def test_disk_full(tmp: Path) -> None:
    if not can_mount():
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root: a tmpfs must be mountable for the disk-full scenario")
        pytest.skip("needs root to mount a small tmpfs")
    judge(await disk_full(tmp, SCALE))


@pytest.mark.timeout(SCALE.timeout)
async def test_fsync_failing(tmp: Path) -> None:
    if shutil.which("strace") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("strace is missing: make sys-deps installs it")
        pytest.skip("strace is not installed (make sys-deps installs it)")
    judge(await fsync_fails(tmp, SCALE))


@pytest.mark.timeout(SCALE.timeout)
async def test_webhook_receiver_failing(tmp: Path) -> None:
    judge(await receiver_down(tmp, SCALE))
