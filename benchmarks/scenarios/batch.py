"""batch: POST /ingest/batch on the main server, --batch-size events per request."""

from __future__ import annotations

from typing import Any

from benchmarks.harness import Context
from benchmarks.scenarios import closed

TITLE = "batch `/ingest/batch`, FULL"


def run(ctx: Context) -> dict[str, Any]:
    server = ctx.shared_server()
    size = ctx.args.batch_size
    result = ctx.measure(server, "/ingest/batch", "batch", "batch", size)
    result["batch_size"] = size
    result["profile"] = ctx.profile(server, "/ingest/batch", "batch", "batch")
    return result


def markdown(result: dict[str, Any]) -> list[str]:
    return closed.table(f"{result['batch_size']}-event {TITLE}", result)
