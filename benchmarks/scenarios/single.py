"""single: POST /ingest on the main server, one event per request (unique ids), SQLite
synchronous=FULL, no destination. Reported beside the ceiling of the same run."""

from __future__ import annotations

from typing import Any

from benchmarks.harness import Context
from benchmarks.scenarios import closed

TITLE = "single event `/ingest`, FULL, no destination"


def run(ctx: Context) -> dict[str, Any]:
    server = ctx.shared_server()
    result = ctx.measure(server, "/ingest", "single", "single")
    result["profile"] = ctx.profile(server, "/ingest", "single", "single")
    return result


def markdown(result: dict[str, Any]) -> list[str]:
    return closed.table(TITLE, result)
