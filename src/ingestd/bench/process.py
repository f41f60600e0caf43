"""One `ingestd <command>` as a child process: start it, wait until it answers, stop it.

The one harness for everything that runs a real ingestd: the test suite's servers, the
benchmarks in `benchmarks/`, and `ingestd bench --compare`. A process gets a free port
(for commands that serve HTTP), its own log file, and its environment; it is ready when
GET /ready answers 200. Stopping sends SIGTERM (a graceful drain) and kills after a
timeout. Both a blocking API (benchmarks) and an asyncio one (tests, `ingestd bench`)
are here; the asyncio one runs the blocking calls in a thread, so neither copy of the
logic exists twice. CPU and RSS are read from /proc for the process and its children
(`ingestd api --workers N` spawns N).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

HTTP_COMMANDS = frozenset({"serve", "api"})
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024 if hasattr(os, "sysconf") else 4


class ProcessFailed(RuntimeError):
    """The process exited before it was ready, or did not get ready in time."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ingestd_command() -> list[str]:
    """The `ingestd` entry point of the running interpreter's environment."""
    script = Path(sys.executable).parent / "ingestd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "ingestd.cli"]


class IngestdProcess:
    """`ingestd <command> [args]` with its own log file; HTTP commands get a port."""

    def __init__(
        self,
        command: str,
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        port: int | None = None,
        inherit_env: bool = True,
        executable: Sequence[str] | None = None,
    ) -> None:
        self.command = command
        self.log = log
        self.env = {**(os.environ if inherit_env else {}), **(env or {})}
        self.args = list(args)
        self.port = port if port is not None else (free_port() if command in HTTP_COMMANDS else 0)
        self.serves_http = command in HTTP_COMMANDS or (command == "worker" and self.port > 0)
        """A worker given a port serves /metrics, /health and /ready there (0: none)."""
        self.url = f"http://127.0.0.1:{self.port}"
        self.executable = list(executable) if executable is not None else ingestd_command()
        self.proc: subprocess.Popen[bytes] | None = None

    # -- blocking API ------------------------------------------------------------------

    def argv(self) -> list[str]:
        argv = [*self.executable, self.command]
        if self.command in HTTP_COMMANDS:
            argv += ["--host", "127.0.0.1", "--port", str(self.port)]
        elif self.command == "worker":
            argv += ["--metrics-port", str(self.port)]
        return argv + self.args

    def launch(self) -> None:
        """Start the process (appending to its log) without waiting for it."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(  # noqa: S603 (our own entry point)
                self.argv(), env=self.env, stdout=out, stderr=out
            )

    def answers_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ready", timeout=1) as response:  # noqa: S310
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_until_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise ProcessFailed(
                    f"ingestd {self.command} exited with {self.proc.returncode} before it "
                    f"was ready:\n{self.tail()}"
                )
            if not self.serves_http or self.answers_ready():
                return
            if time.monotonic() > deadline:
                # Stopped, not left running: a caller that gives up would leak it (and
                # its port and database) to the runs after it.
                code = self.shutdown()
                raise ProcessFailed(
                    f"ingestd {self.command} not ready after {timeout:g} s (stopped, exit "
                    f"code {code}):\n{self.tail()}"
                )
            time.sleep(0.05)

    def run(self, timeout: float = 30.0) -> IngestdProcess:
        """Launch and wait until ready; returns self."""
        self.launch()
        self.wait_until_ready(timeout)
        return self

    def shutdown(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; the exit code (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def signal(self, sig: int) -> None:
        assert self.proc is not None, "not started"
        self.proc.send_signal(sig)

    # -- asyncio API (the blocking calls in a thread) ------------------------------------

    async def start(self, timeout: float = 30.0) -> None:
        self.launch()
        await self.wait_ready(timeout)

    async def wait_ready(self, timeout: float = 30.0) -> None:
        await asyncio.to_thread(self.wait_until_ready, timeout)

    async def stop(self, timeout: float = 15.0) -> int | None:
        return await asyncio.to_thread(self.shutdown, timeout)

    # -- what it costs ---------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU of the process and every live process below it."""
        return tree_cpu_seconds(self.pid)

    def rss_kb(self) -> int:
        with open(f"/proc/{self.pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_KB

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, size: int = 4000) -> str:
        return self.logs()[-size:]


def descendants(pid: int) -> list[int]:
    """pid and every live process below it."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(p) for p in descendants(pid))
