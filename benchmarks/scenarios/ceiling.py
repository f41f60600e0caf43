"""ceiling: POST /_bench/noop on the main server, the raw ASGI no-op (reads the body,
answers 202, touches nothing): what every ratio below is measured against."""

from __future__ import annotations

from typing import Any

from benchmarks.harness import Context
from benchmarks.scenarios import closed

TITLE = "no-op ceiling `/_bench/noop`"


def run(ctx: Context) -> dict[str, Any]:
    server = ctx.shared_server()
    return ctx.measure(server, "/_bench/noop", "noop", "ceiling")


def markdown(result: dict[str, Any]) -> list[str]:
    return closed.table(TITLE, result)
