"""handler: single events as in `single`, on a server with one handler destination
subscribed (a no-op async handler): each event's job row is part of the same commit, and
the in-process worker delivers while the load runs."""

from __future__ import annotations

from typing import Any

from benchmarks.handlers import NOOP_TOML
from benchmarks.harness import Context, Server, log
from benchmarks.scenarios import closed

TITLE = "single event `/ingest`, FULL, one handler destination"


def run(ctx: Context) -> dict[str, Any]:
    config = ctx.workdir / "handler-noop.toml"
    config.write_text(NOOP_TOML)
    server = Server(ctx.workdir, "handler", env={"INGESTD_CONFIG": str(config)}).start_now()
    log(f"server pid {server.pid} (SQLite FULL, one no-op handler destination)")
    try:
        result = ctx.measure(server, "/ingest", "single", "handler")
        result["profile"] = ctx.profile(server, "/ingest", "single", "handler")
    finally:
        server.shutdown()
    return result


def markdown(result: dict[str, Any]) -> list[str]:
    return closed.table(TITLE, result)
