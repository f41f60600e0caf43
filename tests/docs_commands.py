"""Run the shell commands of a docs page in order, as a reader would in one terminal.

A page's ```sh blocks are the commands; ```text blocks are what they print. Inside
`=== "Tab"` groups only the chosen tab's blocks run. The well-known ports a page uses are
replaced by free ones (the machine is shared), and so are the files it names, when a test
passes a copy with those ports in.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[1]
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>\w*)\s*$")
DONE = "== every command of the page ran"
TAB = re.compile(r'^=== "(?P<name>[^"]+)"')


def shell_blocks(page: Path, tab: str | None = None) -> list[str]:
    """The ```sh blocks of `page` in order (in tab groups, only those under `tab`)."""
    blocks: list[str] = []
    current_tab: str | None = None
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if match := TAB.match(line):
            current_tab = match["name"]
        elif line and not line.startswith(" ") and not TAB.match(line):
            current_tab = None
        fence = FENCE.match(line)
        if fence:
            indent, body = len(fence["indent"]), []
            i += 1
            while not lines[i].strip().startswith("```"):
                body.append(lines[i][indent:])
                i += 1
            if fence["lang"] == "sh" and (current_tab is None or current_tab == tab):
                blocks.append("\n".join(body))
        i += 1
    return blocks


@dataclass
class Session:
    """The page's commands running in one bash, its output collected in a file."""

    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, *needles: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.output()
            if all(n in text for n in needles):
                return text
            if time.monotonic() > deadline or self.proc.poll() is not None:
                missing = [n for n in needles if n not in text]
                raise AssertionError(
                    f"never printed {missing} (exit status {self.proc.poll()}):\n{text[-6000:]}"
                )
            time.sleep(0.2)


@contextlib.contextmanager
def run_page(
    page: Path,
    tmp: Path,
    *,
    tab: str | None = None,
    replace: Mapping[str, str] = {},
    env: Mapping[str, str] = {},
) -> Iterator[Session]:
    """Run the page's commands (with `replace` applied) in bash from the repository root;
    every process they started is stopped at the end, background ones included."""
    script = "\n".join(shell_blocks(page, tab))
    for old, new in replace.items():
        script = script.replace(old, new)
    path = tmp / "page.sh"
    path.write_text(f"set -euo pipefail\n{script}\necho '{DONE}'\nwait\n")
    log = tmp / "page.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", str(path)],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group: the page's background jobs too
        )
    try:
        yield Session(proc, log)
    finally:
        stop_group(proc)


def stop_group(proc: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM the page's process group, wait until every member is gone, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()  # reap bash itself, or the group never empties
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
