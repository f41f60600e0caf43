"""The dated summary of one run: machine, load, each scenario's table, the targets.

The summary (Markdown, small) goes to benchmarks/results/ under the run's date and
scenarios, to be committed and quoted by RESULTS.md; the raw JSON (every run, every
sample) and profiles stay in the work directory, out of git: the command in the
summary regenerates them.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any


def scenario(name: str) -> Any:
    return importlib.import_module(f"benchmarks.scenarios.{name}")


def ratio(results: dict[str, Any], key: str) -> float | None:
    if "ceiling" in results and key in results:
        return float(results[key]["rps"] / results["ceiling"]["rps"])
    return None


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """The targets of the fast-path work, where this run measured them."""
    rows: list[tuple[str, str, bool]] = []
    for key, label in (("single", "no destination"), ("handler", "one handler destination")):
        share = ratio(results, key)
        if share is not None:
            rows.append((f"single events ≥ 0.5x the no-op, {label}", f"{share:.2f}x", share >= 0.5))
    if "openloop" in results:
        r = results["openloop"]
        p99 = r["latency_us"]["p99"] / 1000
        rows.append(
            (f"open loop {r['rate']:,.0f}/s P99 ≤ 10 ms from due", f"{p99:.1f} ms", p99 <= 10)
        )
    if "batch" in results:
        eps = results["batch"]["events_per_s"]
        rows.append(
            ("batches ≥ 100,000 events/s (SQLite, 1 process)", f"{eps:,.0f}", eps >= 100_000)
        )
    if "mixed" in results:
        p99 = results["mixed"]["single_latency_us"]["p99"] / 1000
        rows.append(("mixed: singles P99 ≤ 20 ms beside batches", f"{p99:.1f} ms", p99 <= 20))
    if "single" in results:
        p99 = results["single"]["latency_us"]["p99"] / 1000
        rows.append(("closed loop 64 connections P99 ≤ 10 ms", f"{p99:.1f} ms", p99 <= 10))
    if "e2e" in results:
        e = results["e2e"]
        p99 = e["accepted_to_delivered_us"]["p99"] / 1000
        limit = 5 if e["backend"] == "sqlite" else 15
        rows.append(
            (
                f"202 → handler P99 ≤ {limit} ms at {e['rate']:g}/s ({e['backend']})",
                f"{p99:.1f} ms",
                p99 <= limit,
            )
        )
    for key, r in results.get("worker", {}).items():
        limit = 30_000 if r["backend"] == "sqlite" else 20_000
        if r["workers"] == 1:
            rows.append(
                (
                    f"worker drain ≥ {limit:,} jobs/s ({key})",
                    f"{r['jobs_per_s']:,.0f}",
                    r["jobs_per_s"] >= limit,
                )
            )
    return rows


def markdown(results: dict[str, Any], order: list[str]) -> str:
    m = results["machine"]
    out = [
        f"# Benchmark run {m['date']}",
        "",
        f"`{results['command']}`",
        "",
        f"{m['nproc']} x {m['cpu']}, kernel {m['kernel']}, Python {m['python']}, ingestd "
        f"{m['git']}; load generator {results['generator']}, {results['connections']} "
        f"connections, {results['duration']:g} s per run; load average {m['load_average']:.1f} "
        f"at the start, {results['load_average_end']:.1f} at the end.",
    ]
    for name in order:
        if name not in results:
            continue
        module = scenario(name)
        out += ["", f"## {name}: {module.TITLE}", ""]
        out += module.markdown(results[name])
        share = ratio(results, name) if name in ("single", "handler", "normal") else None
        if share is not None:
            out += ["", f"ratio to the no-op of this run: **{share:.2f}x**"]
    rows = targets(results)
    if rows:
        out += ["", "## Targets", "", "| target | measured | met |", "|---|---|---|"]
        out += [f"| {t} | {v} | {'yes' if ok else '**no**'} |" for t, v, ok in rows]
    return "\n".join(out) + "\n"


def summary_path(folder: Path, results: dict[str, Any], order: list[str]) -> Path:
    stamp = results["machine"]["date"].replace(" UTC", "").replace(" ", "-").replace(":", "")
    return folder / f"{stamp}-{'-'.join(order)}.md"
