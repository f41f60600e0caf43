"""Safe by default (issue 14 item 11): without API keys, `ingestd serve` and `ingestd api`
listen on loopback only unless told otherwise in so many words, and warn at start."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from support import INGESTD, free_port, run_cli

WARNING = "no API keys configured"


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    return {"INGESTD_DATABASE_URL": f"sqlite:///{tmp}/ingestd.db", **extra}


@pytest.mark.parametrize("command", ["serve", "api"])
@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_no_keys_on_a_wildcard_address_is_refused(tmp_path: Path, command: str, host: str) -> None:
    port = free_port()
    done = run_cli(command, "--host", host, "--port", str(port), env=env_for(tmp_path))
    assert done.returncode == 2, done.stderr
    assert "not a loopback address" in done.stderr
    assert "--allow-unauthenticated" in done.stderr
    assert "Traceback" not in done.stderr
    with pytest.raises(httpx.ConnectError):  # it never listened
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)


def serve(tmp: Path, args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """Start `ingestd serve ARGS`, wait for /health on loopback, stop it; (status, log)."""
    port = free_port()
    log = tmp / f"serve-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [INGESTD, "serve", "--port", str(port), *args],
            env={**os.environ, **env},
            stdout=out,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    return status, log.read_text()


def test_the_explicit_flag_serves_every_address_with_a_warning(tmp_path: Path) -> None:
    status, log = serve(
        tmp_path, ["--host", "0.0.0.0", "--allow-unauthenticated"], env_for(tmp_path)
    )
    assert status == 200
    assert WARNING in log and "INGESTD_ALLOW_UNAUTHENTICATED is set" in log


def test_the_explicit_setting_serves_every_address_with_a_warning(tmp_path: Path) -> None:
    env = env_for(tmp_path, INGESTD_ALLOW_UNAUTHENTICATED="true")
    status, log = serve(tmp_path, ["--host", "0.0.0.0"], env)
    assert status == 200
    assert WARNING in log


def test_loopback_without_keys_serves_with_a_warning(tmp_path: Path) -> None:
    status, log = serve(tmp_path, ["--host", "127.0.0.1"], env_for(tmp_path))
    assert status == 200
    assert WARNING in log and "this machine only" in log


def test_with_keys_every_address_is_served_without_a_warning(tmp_path: Path) -> None:
    keys = json.dumps([{"id": "ops", "key": "k" * 32, "scopes": ["ingest", "admin"]}])
    status, log = serve(tmp_path, ["--host", "0.0.0.0"], env_for(tmp_path, INGESTD_API_KEYS=keys))
    assert status == 200
    assert WARNING not in log


def test_keys_in_the_store_count_as_keys(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    made = run_cli("keys", "create", "--scopes", "admin", "--quiet", env=env)
    assert made.returncode == 0, made.stderr
    status, log = serve(tmp_path, ["--host", "0.0.0.0"], env)
    assert status == 200  # /health is open; every other route now needs the key
    assert WARNING not in log
    assert made.stdout.strip() not in log
