"""A real forward proxy for tests: Debian's tinyproxy on a loopback address of its own,
with its log read back to see what it was asked (`make test` installs it)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from support import free_port

_REQUEST = re.compile(r"Request \(file descriptor \d+\): (\S+) (\S+) HTTP/")


def require_tinyproxy() -> str:
    path = shutil.which("tinyproxy") or (
        "/usr/bin/tinyproxy" if Path("/usr/bin/tinyproxy").exists() else None
    )
    if path is None:
        message = "tinyproxy is not installed (make test installs it: apt-get install tinyproxy)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


class Tinyproxy:
    """`Tinyproxy(tmp, user="u", password="p").start()`; `requests()` lists (method,
    target) as its log shows them; `connections()` counts the clients it accepted."""

    def __init__(
        self, tmp: Path, host: str = "127.0.0.3", user: str | None = None, password: str = ""
    ) -> None:
        self.host = host
        self.port = free_port()
        self.dir = tmp / f"tinyproxy-{self.port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / "tinyproxy.log"
        self.user = user
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, credentials: bool = True) -> str:
        auth = f"{self.user}:{self.password}@" if credentials and self.user else ""
        return f"http://{auth}{self.host}:{self.port}"

    def start(self) -> Tinyproxy:
        binary = require_tinyproxy()
        lines = [
            f"Port {self.port}",
            f"Listen {self.host}",
            "Timeout 30",
            f'LogFile "{self.log}"',
            "LogLevel Info",
            "MaxClients 64",
            "Allow 127.0.0.0/8",
        ]
        if self.user:
            lines.append(f"BasicAuth {self.user} {self.password}")
        conf = self.dir / "tinyproxy.conf"
        conf.write_text("\n".join(lines) + "\n")
        # -d: in the foreground, so that this process owns it and stop() ends it.
        self.proc = subprocess.Popen(
            [binary, "-d", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=(self.dir / "stderr.log").open("wb"),
        )
        # Ready when its log says so: a probe connection would show in connections().
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            if self.log.exists() and "Accepting connections" in self.log.read_text():
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"tinyproxy did not start: {self.logs()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def logs(self) -> str:
        parts = [p.read_text() for p in (self.log, self.dir / "stderr.log") if p.exists()]
        return "\n".join(parts)

    def requests(self) -> list[tuple[str, str]]:
        """(method, target) of every request the proxy read, in order."""
        text = self.log.read_text() if self.log.exists() else ""
        return [(m.group(1), m.group(2)) for m in _REQUEST.finditer(text)]

    def connections(self) -> int:
        text = self.log.read_text() if self.log.exists() else ""
        return text.count("Connect (file descriptor")
