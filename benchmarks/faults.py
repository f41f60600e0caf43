"""The fault suite's long form: tests/faults at LONG scale, its figures in docs/RELIABILITY.md.

    .venv/bin/python -m benchmarks.faults                 # every scenario, long (~20 min)
    .venv/bin/python -m benchmarks.faults --scale quick   # the make-test form, recorded
    .venv/bin/python -m benchmarks.faults -k "serve or disk" --no-record

It runs the same pytest tests as `make test` (tests/faults/test_faults.py) with
INGESTD_FAULTS_SCALE, so the long form makes exactly the quick form's checks; each test
appends its figures and verdict to a JSON-lines file, which this script turns into a
dated section of docs/RELIABILITY.md (newest first), with the command, the commit, the
machine and its load. It stops PostgreSQL and kills Redis (both restarted at once): the
shared services' other users see a few seconds of outage. The clients' logs and the
servers' logs of every scenario are kept in --workdir.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RELIABILITY = ROOT / "docs" / "RELIABILITY.md"
MARKER = "<!-- runs: newest first; benchmarks/faults.py inserts each below this line -->"


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def seconds(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.1f} s"
    return f"{statistics.median(values):.1f} / {max(values):.1f} s"


def row(r: dict[str, Any]) -> str:
    def opt(key: str) -> str:
        return "-" if r.get(key) is None else f"{r[key]:,}"

    verdict = {"pass": "pass", "xfail": "**known defect**", "fail": "**FAIL**"}[r["verdict"]]
    cells = [
        r["scenario"],
        r["load"],
        f"{r['faults']:,}",
        f"{r['acked']:,}",
        f"**{r['lost']}**",
        f"**{r['duplicated']}**",
        f"**{r['unexpected']}**",
        f"{r['recovered']:,}",
        f"{r['contradicted']:,}",
        opt("missing_deliveries"),
        opt("duplicate_deliveries"),
        seconds(r["recover_s"]),
        f"{r['seconds']:.0f} s",
        verdict,
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| scenario | load | faults | acked | lost | dup. | unexp. | recovered | contradicted 503 "
    "| missing deliveries | duplicate deliveries | recovery (median / max) | took | verdict |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|"
)


def section(records: list[dict[str, Any]], args: argparse.Namespace, meta: dict[str, str]) -> str:
    lines = [
        f"### {meta['date']} — {args.scale} form, commit {meta['commit']}",
        "",
        f"`{meta['command']}` on {meta['machine']}; load average {meta['load_before']} before, "
        f"{meta['load_after']} after; {meta['took']}; pytest exit {meta['exit']}.",
        "",
        HEADER,
        *(row(r) for r in records),
        "",
    ]
    for r in records:
        notes = list(r["notes"])
        notes += [f"not met: {v}" for v in r["violations"]]
        notes += [f"known defect: {k}" for k in r["known"]]
        met = [name for name, ok in r["checks"].items() if ok]
        if met:
            notes.append("met: " + "; ".join(met))
        lines.append(f"- *{r['scenario']}*: " + " · ".join(notes))
        lines.append(f"  answers by status: {r['statuses']}")
    missing = set(meta["expected"].split(",")) - {r["test"] for r in records}
    if missing - {""}:
        lines.append(f"- not run (skipped or errored before its figures): {sorted(missing)}")
    return "\n".join(lines) + "\n"


def record(text: str) -> None:
    doc = RELIABILITY.read_text()
    head, sep, tail = doc.partition(MARKER)
    if not sep:
        raise SystemExit(f"{RELIABILITY} lacks the marker line {MARKER!r}")
    RELIABILITY.write_text(f"{head}{MARKER}\n\n{text}{tail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=("long", "quick"), default="long")
    parser.add_argument("-k", dest="select", help="pytest -k expression (default: all)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "benchmarks" / "out" / "faults")
    parser.add_argument("--no-record", action="store_true", help="leave RELIABILITY.md alone")
    args = parser.parse_args()

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    work = args.workdir / f"{stamp}-{args.scale}"
    work.mkdir(parents=True, exist_ok=True)
    results = work / "figures.jsonl"
    env = {
        **os.environ,
        "INGESTD_FAULTS_SCALE": args.scale,
        "INGESTD_FAULTS_RESULTS": str(results),
        "INGESTD_FAULTS_LOGS": str(work),
        "INGESTD_TEST_OUTAGES": "1",
    }
    base = [sys.executable, "-m", "pytest", "tests/faults", "-p", "no:cacheprovider"]
    base += ["-k", args.select] if args.select else []
    argv = [*base, "-q", "-rA"]
    listed = subprocess.run(
        [*base, "--collect-only", "-q"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    expected = [ln.split("::")[-1] for ln in listed.stdout.splitlines() if "::" in ln]
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit(),
        "command": "python -m benchmarks.faults"
        + (f" --scale {args.scale}" if args.scale != "long" else "")
        + (f" -k '{args.select}'" if args.select else ""),
        "machine": f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()} (a machine shared with other engineers' runs)",
        "load_before": load_average(),
        "expected": ",".join(expected),
    }
    started = time.monotonic()
    print(f"running {len(expected)} scenarios at {args.scale} scale; logs in {work}", flush=True)
    done = subprocess.run(argv, cwd=ROOT, env=env, check=False)
    meta["took"] = f"{(time.monotonic() - started) / 60:.1f} min in all"
    meta["load_after"] = load_average()
    meta["exit"] = str(done.returncode)
    lines = results.read_text().splitlines() if results.exists() else []
    records = [json.loads(line) for line in lines]
    text = section(records, args, meta)
    print(text)
    (work / "section.md").write_text(text)
    if not args.no_record:
        record(text)
        print(f"recorded in {RELIABILITY.relative_to(ROOT)}")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
