"""rss: the server's RSS sampled every 0.5 s while --rss-events events arrive in
100-event batches (wrk runs of --rss-chunk seconds): flat after warm-up, or a leak."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from benchmarks.harness import Context, Server, log

TITLE = "RSS over many events"


def run(ctx: Context) -> dict[str, Any]:
    args = ctx.args
    server = Server(ctx.workdir, "rss").start_now()
    start_rss = server.rss_kb()
    log(f"server pid {server.pid} (SQLite FULL), RSS at start {start_rss} KiB")
    samples: list[tuple[float, int, int]] = []  # (seconds, events acknowledged so far, rss)
    done = threading.Event()
    events = 0
    t0 = time.monotonic()

    def sampler() -> None:
        while not done.wait(0.5):
            with contextlib.suppress(OSError):
                samples.append((time.monotonic() - t0, events, server.rss_kb()))

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    chunks = []
    stamp = int(time.time())
    deadline = time.monotonic() + args.rss_max_seconds
    try:
        while events < args.rss_events and time.monotonic() < deadline:
            r = ctx.load.run(
                server, "/ingest/batch", "batch", f"r{stamp}c{len(chunks)}", args.rss_chunk
            )
            events += r["events"]
            rss = server.rss_kb()
            chunks.append(
                {
                    "events": events,
                    "rss_kb": rss,
                    "events_per_s": r["events_per_s"],
                    "p99_ms": r["latency_us"]["p99"] / 1000,
                    "non2xx": r["non2xx"],
                }
            )
            log(f"rss: {events:>9,} events  RSS {rss:,} KiB  {r['events_per_s']:,.0f} ev/s")
    finally:
        done.set()
        thread.join()
        end_rss = server.rss_kb()
        db_bytes = sum(p.stat().st_size for p in server.dir.glob("ingestd.db*"))
        server.shutdown()
    warm_events = args.rss_events * args.rss_warmup_fraction
    after = [s for s in samples if s[1] >= warm_events]
    warm_rss = after[0][2] if after else end_rss
    low = min((s[2] for s in after), default=end_rss)
    high = max((s[2] for s in after), default=end_rss)
    return {
        "events": events,
        "seconds": time.monotonic() - t0,
        "rss_kb_start": start_rss,
        "rss_kb_after_warmup": warm_rss,
        "warmup_events": int(warm_events),
        "rss_kb_min_after_warmup": low,
        "rss_kb_max_after_warmup": high,
        "rss_kb_end": end_rss,
        "max_deviation_pct": 100 * max(high - warm_rss, warm_rss - low) / warm_rss,
        "end_vs_warmup_pct": 100 * (end_rss - warm_rss) / warm_rss,
        "within_10pct": high <= warm_rss * 1.1 and low >= warm_rss * 0.9,
        "db_bytes": db_bytes,
        "chunks": chunks,
        "samples": samples,
        "command": f"repeat until >= {args.rss_events:,} events: "
        + ctx.load.command(server.url + "/ingest/batch", "batch", 100, args.rss_chunk),
    }


def markdown(r: dict[str, Any]) -> list[str]:
    return [
        f"RSS over {r['events']:,} events in 100-event batches ({r['seconds']:.0f} s, "
        f"database {r['db_bytes'] / 2**20:,.0f} MiB): start {r['rss_kb_start'] / 1024:.1f} "
        f"MiB, after {r['warmup_events']:,} events (warm-up) "
        f"{r['rss_kb_after_warmup'] / 1024:.1f} MiB, then "
        f"{r['rss_kb_min_after_warmup'] / 1024:.1f}..{r['rss_kb_max_after_warmup'] / 1024:.1f}"
        f" MiB, end {r['rss_kb_end'] / 1024:.1f} MiB "
        f"(max deviation {r['max_deviation_pct']:.1f}%, end {r['end_vs_warmup_pct']:+.1f}%)."
    ]
