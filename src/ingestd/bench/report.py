"""Results for people (a table), for programs (JSON) and for the eye (a PNG latency plot)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ingestd.bench.histogram import Histogram

ROWS: tuple[tuple[str, str], ...] = (
    ("min", "min"),
    ("avg", "avg"),
    ("P50", "p50"),
    ("P95", "p95"),
    ("P99", "p99"),
    ("P99.9", "p99_9"),
    ("max", "max"),
)


def ms(us: float | int | None) -> str:
    if us is None:
        return "-"
    value = us / 1000.0
    if value >= 100:
        return f"{value:,.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def table(result: dict[str, Any]) -> str:
    """The final table of one run."""
    lines = []
    mode = result["mode"]
    how = (
        f"target {result['rate']:,.0f} req/s"
        if result["rate"] is not None
        else f"{result['concurrency']} connections"
    )
    lines.append(
        f"ingestd bench  {result['target']}  {mode}, {how}, {result['processes']} sender "
        f"process{'es' if result['processes'] != 1 else ''}"
        + (f", batches of {result['batch']}" if result["batch"] else "")
        + (f", {result['duplicates']:.0%} duplicates" if result["duplicates"] else "")
    )
    lines.append("")
    lines.append(f"  requests     {result['requests']:>12,}   in {result['elapsed_s']:.2f} s")
    lines.append(f"  throughput   {result['throughput_rps']:>12,.1f}   req/s")
    if result["batch"]:
        lines.append(f"               {result['events_per_s']:>12,.1f}   events/s")
    ev = result["events"]
    lines.append(
        f"  events       {ev.get('sent', 0):>12,}   sent ({ev.get('resent', 0):,} resent as "
        f"duplicates): {ev.get('accepted', 0):,} accepted, {ev.get('duplicate', 0):,} duplicate, "
        f"{ev.get('rejected', 0):,} rejected, {ev.get('failed', 0):,} failed"
    )
    lines.append("")
    cols = [("latency", result["latency_us"])]
    if result.get("service_time_us"):
        cols.append(("service", result["service_time_us"]))
    if result.get("e2e"):
        cols.append(("202→delivered", result["e2e"]["latency_us"]))
    lines.append("  " + " " * 8 + "".join(f"{name:>16}" for name, _ in cols))
    for label, key in ROWS:
        lines.append("  " + f"{label:<8}" + "".join(f"{ms(c.get(key)):>16}" for _, c in cols))
    lines.append("")
    lines.append(f"  latency: {result['latency_note']}")
    if result.get("service_time_us"):
        lines.append("  service: from the moment the request was actually written")
    statuses = ", ".join(f"{code}: {n:,}" for code, n in result["statuses"].items()) or "none"
    lines.append(f"  statuses     {statuses}")
    bad = {c: n for c, n in result["statuses"].items() if not c.startswith("2")}
    errors = {**{f"HTTP {c}": n for c, n in bad.items()}, **result["errors"]}
    lines.append(
        "  errors       "
        + (", ".join(f"{k}: {n:,}" for k, n in errors.items()) if errors else "none")
    )
    e2e = result.get("e2e")
    if e2e:
        lines.append(
            f"  e2e          {e2e['delivered']:,} delivered to {e2e['receiver']}, "
            f"{e2e['missing']:,} missing, {e2e['redeliveries']:,} redeliveries"
        )
    lines.append("")
    gen = result["generator"]
    lines.append("  " + gen["verdict"])
    if gen.get("cpu_us_per_request"):
        lines.append(
            f"  generator cost: {gen['cpu_us_per_request']:.1f} µs of CPU per request "
            f"(kernel included): about {gen['ceiling_rps_estimate']:,} req/s with "
            f"{result['processes']} process{'es' if result['processes'] != 1 else ''} "
            "on idle cores"
        )
    return "\n".join(lines)


def compare_table(before: dict[str, Any], after: dict[str, Any], names: tuple[str, str]) -> str:
    """Two runs of the same load side by side (async ingestion, then synchronous)."""
    lines = [f"  {'':<16}{names[0]:>16}{names[1]:>16}{'change':>12}"]

    def row(label: str, a: float | int, b: float | int, fmt: Any) -> None:
        change = f"{(b - a) / a * 100:+.0f}%" if a else "-"
        lines.append(f"  {label:<16}{fmt(a):>16}{fmt(b):>16}{change:>12}")

    row("requests", before["requests"], after["requests"], lambda v: f"{v:,}")
    row("throughput/s", before["throughput_rps"], after["throughput_rps"], lambda v: f"{v:,.1f}")
    for label, key in ROWS:
        row(label, before["latency_us"][key], after["latency_us"][key], ms)
    row("errors", error_count(before), error_count(after), lambda v: f"{v:,}")
    if before.get("e2e") and after.get("e2e"):
        for label, key in (("e2e P50", "p50"), ("e2e P99", "p99")):
            row(label, before["e2e"]["latency_us"][key], after["e2e"]["latency_us"][key], ms)
    return "\n".join(lines)


def error_count(result: dict[str, Any]) -> int:
    bad = sum(int(n) for code, n in result["statuses"].items() if not code.startswith("2"))
    return bad + sum(int(n) for n in result["errors"].values())


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=2) + "\n")


class PlotUnavailable(Exception):
    pass


def plot(path: Path, runs: list[tuple[str, dict[str, Any]]]) -> None:
    """A PNG: the latency percentile spectrum (log scale) and latency/throughput over time."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable(
            "--plot needs matplotlib: pip install 'ingestd[bench]' (or pip install matplotlib)"
        ) from exc
    fig, (spectrum, timeline) = plt.subplots(2, 1, figsize=(10, 9))
    ticks = [0.0, 90.0, 99.0, 99.9, 99.99, 99.999, 99.9999]
    most = 1
    low, high = float("inf"), 0.0
    for name, result in runs:
        h = Histogram.from_dict(result["histogram_us"])
        if not h.count:
            continue
        # x = 1 / (1 - fraction): each decade is one more "nine"; the last sample sits at
        # the count (its fraction is 1).
        xs, ys = [1.0], [h.min / 1000.0]
        for value, frac in h.distribution():
            xs.append(1.0 / max(1.0 - frac, 1.0 / h.count))
            ys.append(value / 1000.0)
        spectrum.step(xs, ys, where="pre", label=name)
        most = max(most, h.count)
        low, high = min(low, max(h.min, 1) / 1000.0), max(high, h.max / 1000.0)
    if high > 0 and high / low > 50:
        spectrum.set_yscale("log")
    ticks = [t for t in ticks if 1.0 / (1.0 - t / 100.0) <= most] or [0.0]
    spectrum.set_xscale("log")
    spectrum.set_xlim(1.0, max(most, 10))
    spectrum.set_xticks([1.0 / (1.0 - t / 100.0) for t in ticks])
    spectrum.set_xticklabels([f"{t:g}%" for t in ticks])
    spectrum.set_xlabel("percentile")
    spectrum.set_ylabel("latency (ms)")
    spectrum.set_title("Latency by percentile")
    spectrum.grid(True, which="both", alpha=0.3)
    spectrum.legend(loc="upper left")
    rate_axis = timeline.twinx()
    peak_rate = 0.0
    for index, (name, result) in enumerate(runs):
        color = f"C{index}"  # one colour per run; P50 solid, P99 dashed, req/s dotted
        rows = result["timeline"]
        secs = [row["second"] for row in rows]
        timeline.plot(secs, [r["p50"] / 1000 for r in rows], color=color, label=f"{name} P50")
        timeline.plot(secs, [r["p99"] / 1000 for r in rows], "--", color=color, label=f"{name} P99")
        # Only whole seconds: the drain after the last send is not a drop in throughput.
        whole = [r for r in result["timeline"] if r["second"] + 1 <= result["elapsed_s"]]
        peak_rate = max([peak_rate, *(row["requests"] for row in whole)])
        rate_axis.plot(
            [row["second"] for row in whole],
            [row["requests"] for row in whole],
            linestyle=":",
            color=color,
            label=f"{name} req/s",
        )
    timeline.set_xlabel("second of the run")
    timeline.set_ylabel("latency (ms)")
    rate_axis.set_ylabel("requests answered per second")
    # From zero, with headroom: a 3% wobble must not look like a collapse, nor hug the frame.
    rate_axis.set_ylim(0, max(peak_rate * 1.15, 1))
    timeline.set_title("Over time")
    timeline.grid(True, alpha=0.3)
    handles, labels = timeline.get_legend_handles_labels()
    more_h, more_l = rate_axis.get_legend_handles_labels()
    timeline.legend(handles + more_h, labels + more_l, loc="upper left", fontsize="small")
    first = runs[0][1]
    fig.suptitle(f"ingestd bench: {first['target']} ({first['mode']})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
