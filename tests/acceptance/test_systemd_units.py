"""deploy/systemd as an operator installs it: `systemd-analyze verify` and `security` on a
root laid out like a host (/etc/systemd/system, /etc/ingestd, /opt/ingestd), and the units'
commands and settings checked against the CLI and the settings model they drive."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from ingestd.cli import parser
from ingestd.config import Settings

DEPLOY = Path(__file__).parents[2] / "deploy" / "systemd"
SERVICES = ("ingestd-api.service", "ingestd-worker.service", "ingestd-serve.service")
UNITS = (*SERVICES, "ingestd-backup.service", "ingestd-backup.timer")
EXPOSURE_THRESHOLD = 20  # systemd-analyze security's "OK" band is 1.x-2.x (x10 in JSON)
# Executables the units name, created in the fake root so `verify` finds them.
EXECUTABLES = ("opt/ingestd/bin/ingestd", "bin/sh", "usr/bin/find")

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze missing (make sys-deps)"
)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("root")
    units = root / "etc/systemd/system"
    shutil.copytree(DEPLOY, units, ignore=shutil.ignore_patterns("*.env", "*.sysusers", "*.md"))
    (root / "etc/ingestd").mkdir(parents=True)
    shutil.copy(DEPLOY / "ingestd.env", root / "etc/ingestd/ingestd.env")
    # The targets and system units the ingestd units order themselves against.
    shutil.copytree("/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    for name in EXECUTABLES:
        exe = root / name
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text("#!/bin/sh\n")
        exe.chmod(0o755)
    return root


def analyze(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", *args, f"--root={root}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_units_pass_systemd_analyze_verify(root: Path) -> None:
    result = analyze(root, "verify", "--man=no", *UNITS)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


def test_verify_fails_on_a_broken_unit(root: Path) -> None:
    """The check above can fail: a unit whose command does not exist is reported."""
    broken = root / "etc/systemd/system/ingestd-broken.service"
    broken.write_text("[Service]\nExecStart=/opt/ingestd/bin/missing\n")
    try:
        result = analyze(root, "verify", "--man=no", broken.name)
    finally:
        broken.unlink()
    assert result.returncode != 0
    assert "missing" in result.stderr


@pytest.mark.parametrize("unit", SERVICES)
def test_services_are_sandboxed(root: Path, unit: str) -> None:
    result = analyze(root, "security", "--offline=yes", "--json=short", unit)
    assert result.returncode == 0, result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)}
    for setting in (
        "User=/DynamicUser=",
        "NoNewPrivileges=",
        "ProtectSystem=",
        "ProtectHome=",
        "PrivateTmp=",
        "PrivateDevices=",
        "RestrictSUIDSGID=",
        "MemoryDenyWriteExecute=",
    ):
        assert checks[setting]["set"], f"{unit}: {setting} is not set (drop-in not applied?)"
    total = analyze(root, "security", "--offline=yes", f"--threshold={EXPOSURE_THRESHOLD}", unit)
    assert total.returncode == 0, total.stdout[-400:]
    assert re.search(r"Overall exposure level for \S+: \d\.\d (OK|SAFE)", total.stdout)


def unit_settings(path: Path) -> dict[str, list[str]]:
    """Key → values of a unit file (repeated keys kept in order)."""
    values: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def env_file() -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in (DEPLOY / "ingestd.env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    return {k: v for k, v in pairs}


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(s|min)?", value)
    assert match, value
    return float(match[1]) * (60 if match[2] == "min" else 1)


def test_stop_timeout_is_above_the_shutdown_grace() -> None:
    sandbox = unit_settings(DEPLOY / "ingestd-.service.d/10-sandbox.conf")
    [timeout] = sandbox["TimeoutStopSec"]
    grace = Settings(**{"shutdown_grace": env_file()["INGESTD_SHUTDOWN_GRACE"]}).shutdown_grace
    assert seconds(timeout) >= grace + 10, (timeout, grace)
    assert sandbox["Restart"] == ["on-failure"]
    assert sandbox["EnvironmentFile"] == ["/etc/ingestd/ingestd.env"]


def test_env_file_names_only_real_settings() -> None:
    """A misspelt INGESTD_ variable would be ignored silently: every one must be a setting."""
    known = {f"INGESTD_{name.upper()}" for name in Settings.model_fields}
    named = {k for k in env_file() if k.startswith("INGESTD_")}
    assert named, "the env file sets no INGESTD_ variable"
    assert named <= known, named - known


@pytest.mark.parametrize("unit", [*SERVICES, "ingestd-backup.service"])
def test_exec_start_is_a_valid_ingestd_command(unit: str) -> None:
    [exec_start] = unit_settings(DEPLOY / unit)["ExecStart"]
    command = re.sub(r"\$\{(\w+)\}", lambda m: env_file()[m[1]], exec_start)
    words = shlex.split(command)
    if words[:2] == ["/bin/sh", "-c"]:  # the backup's dated file name
        words = shlex.split(words[2].removeprefix("exec "))
    assert words[0] == "/opt/ingestd/bin/ingestd"
    args = parser().parse_args(words[1:])  # exits (SystemExit) on a drifted command line
    assert args.command in ("api", "worker", "serve", "backup")
