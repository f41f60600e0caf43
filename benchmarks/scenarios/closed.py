"""Shared by the closed-loop scenarios on the main server: a row of a results table."""

from __future__ import annotations

from typing import Any

HEADER = [
    "| scenario | req/s | events/s | P50 ms | P95 ms | P99 ms | P99.9 ms | non-2xx "
    "| server CPU | server CPU µs/event | loadgen CPU | other CPU | load |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]


def row(label: str, r: dict[str, Any]) -> str:
    lat = r["latency_us"]
    return (
        f"| {label} | {r['rps']:,.0f} | {r['events_per_s']:,.0f} | {lat['p50'] / 1000:.2f} "
        f"| {lat['p95'] / 1000:.2f} | {lat['p99'] / 1000:.2f} | {lat['p999'] / 1000:.2f} "
        f"| {r['non2xx']} | {r['server_cpu_pct']:.0f}% | {r['server_cpu_us_per_event']:.1f} "
        f"| {r['loadgen_cpu_pct']:.0f}% | {r['other_cpu_pct']:.0f}% | {r['load_average']:.1f} |"
    )


def runs(r: dict[str, Any]) -> list[str]:
    if len(r.get("runs", ())) < 2:
        return []
    return [
        "",
        "all runs, events/s (other CPU, load): "
        + ", ".join(
            f"{x['events_per_s']:,.0f} ({x['other_cpu_pct']:.0f}%, {x['load_average']:.1f})"
            for x in r["runs"]
        ),
    ]


def table(label: str, r: dict[str, Any]) -> list[str]:
    return [*HEADER, row(label, r), *runs(r)]
