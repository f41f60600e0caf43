"""mixed: single events at 1,000 req/s (open loop, `ingestd bench --rate`) while one
wrk connection sends 1,000-event batches as fast as it is answered. The single events'
latency from their due time says whether store work holds the event loop; the server's
own 1 ms ticker (GET /_bench/loop-lag, on with INGESTD_BENCH_NOOP) gives the loop's lag."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any

from benchmarks.harness import Context, Load, Server, load_average, log
from benchmarks.scenarios.openloop import bench

TITLE = "single events at 1,000/s beside 1,000-event batches"


def loop_lag(url: str, reset: bool = False) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{url}/_bench/loop-lag{'?reset=1' if reset else ''}") as r:
            return dict(json.loads(r.read()))
    except OSError:  # an ingestd without the probe
        return None


def run(ctx: Context) -> dict[str, Any]:
    args = ctx.args
    server = Server(ctx.workdir, "mixed").start_now()
    log(f"server pid {server.pid} (SQLite FULL): batches of 1,000 beside singles at 1,000/s")
    batches = Load(ctx.load.generator, connections=1, threads=1)
    result: dict[str, Any] = {}
    try:
        bench(server.url, ctx.workdir / "mixed-warm.json", "--rate", "500", "--duration", "2")
        loop_lag(server.url, reset=True)

        def send_batches() -> None:
            result["batches"] = batches.run(
                server, "/ingest/batch", "batch", f"mx{int(time.time())}", args.duration + 1, 1000
            )

        thread = threading.Thread(target=send_batches)
        thread.start()
        time.sleep(0.5)
        single, _ = bench(
            server.url,
            ctx.workdir / "mixed.json",
            "--rate",
            "1000",
            "--duration",
            f"{args.duration:g}",
        )
        lag = loop_lag(server.url)
        thread.join()
    finally:
        server.shutdown()
    result.update(
        single_latency_us=single["latency_us"],
        single_rps=single["throughput_rps"],
        single_statuses=single["statuses"],
        loop_lag_us=lag,
        load_average=load_average(),
    )
    b = result["batches"]
    log(
        f"mixed: singles {single['throughput_rps']:,.0f} req/s, from due P99 "
        f"{single['latency_us']['p99'] / 1000:.2f} ms; batches {b['events_per_s']:,.0f} ev/s; "
        f"loop lag P99 {(lag or {}).get('p99_us', float('nan')) / 1000:.2f} ms"
    )
    return result


def markdown(r: dict[str, Any]) -> list[str]:
    s, b, lag = r["single_latency_us"], r["batches"], r["loop_lag_us"] or {}
    return [
        "| singles req/s | singles from due P50 ms | P99 ms | max ms | batch events/s "
        "| batch P99 ms | loop lag P50 ms | P99 ms | max ms | load |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {r['single_rps']:,.0f} | {s['p50'] / 1000:.2f} | {s['p99'] / 1000:.2f} "
        f"| {s['max'] / 1000:.2f} | {b['events_per_s']:,.0f} | {b['latency_us']['p99'] / 1000:.1f} "
        f"| {lag.get('p50_us', 0) / 1000:.2f} | {lag.get('p99_us', 0) / 1000:.2f} "
        f"| {lag.get('max_us', 0) / 1000:.2f} | {r['load_average']:.1f} |",
    ]
