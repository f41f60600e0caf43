"""normal: `single` against a second server with INGESTD_SQLITE_SYNCHRONOUS=NORMAL (the
commit is not fsynced: what durability costs at this rate)."""

from __future__ import annotations

from typing import Any

from benchmarks.harness import Context, Server, log
from benchmarks.scenarios import closed

TITLE = "single event `/ingest`, NORMAL (not fsynced)"


def run(ctx: Context) -> dict[str, Any]:
    server = Server(ctx.workdir, "normal", synchronous="NORMAL").start_now()
    log(f"server pid {server.pid} on {server.url} (SQLite NORMAL)")
    try:
        result = ctx.measure(server, "/ingest", "single", "normal")
        result["command"] = "INGESTD_SQLITE_SYNCHRONOUS=NORMAL; " + result["command"]
    finally:
        server.shutdown()
    return result


def markdown(result: dict[str, Any]) -> list[str]:
    return closed.table(TITLE, result)
