"""py-spy from outside: sample a running process, keep the raw stacks out of git.

py-spy is not a dependency (the benchmark installs nothing into the project's venv):
`python3 -m venv /tmp/pyspy-venv && /tmp/pyspy-venv/bin/pip install py-spy`, then pass
`--py-spy /tmp/pyspy-venv/bin/py-spy`. The raw folded stacks go to the work directory;
the summary (share of samples by thread, by leaf frame, by frame anywhere on the stack)
is what a results file quotes.
"""

from __future__ import annotations

import collections
import re
import subprocess
from pathlib import Path
from typing import Any


def record(pyspy: str, pid: int, raw: Path, seconds: float) -> subprocess.Popen[bytes]:
    """Start sampling `pid` for `seconds` at 250 Hz into `raw` (folded stacks)."""
    raw.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            pyspy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            f"{seconds:g}",
            "--rate",
            "250",
            "--format",
            "raw",
            "--threads",
            "--nonblocking",
            "-o",
            str(raw),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summarize(raw: Path, out: Path, top: int = 30) -> dict[str, Any]:
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    if not raw.exists():
        return {"error": f"py-spy wrote nothing ({raw})"}
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = frames[0]
        frames = [clean_frame(f) for f in frames[1:]]
        total += count
        threads[thread_name(thread)] += count
        if frames:
            self_time[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return {"error": f"py-spy recorded no samples ({raw})"}
    lines = [f"samples: {total} (non-idle, all threads)", "", "by thread:"]
    lines += [f"  {100 * n / total:5.1f}%  {t}" for t, n in threads.most_common()]
    lines += ["", "self time (leaf frame):"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in self_time.most_common(top)]
    lines += ["", "inclusive time (frame anywhere on the stack):"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top)]
    out.write_text("\n".join(lines) + "\n")
    return {
        "samples": total,
        "summary_file": str(out),
        "raw_file": str(raw),
        "self_top": [(f, round(100 * n / total, 1)) for f, n in self_time.most_common(12)],
        "inclusive_top": [(f, round(100 * n / total, 1)) for f, n in inclusive.most_common(20)],
    }


def clean_frame(frame: str) -> str:
    # "func (/path/to/site-packages/pkg/mod.py:123)" -> "func (pkg/mod.py:123)"
    return re.sub(r"\(/[^)]*?/(site-packages|src|lib/python3\.\d+)/", "(", frame)


def thread_name(thread: str) -> str:
    # "thread (16051): MainThread" -> "MainThread"; pool threads lose their number
    name = thread.split(": ", 1)[-1]
    return re.sub(r"_\d+$", "", name)
