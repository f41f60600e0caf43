"""Events/s one client process pushes through the SDK to one `ingestd serve`.

    python -m benchmarks.sdk_throughput [--events 100000] [--batch 100,1000]
        [--lang python,node] [--repeat 2]

For each run: a fresh `ingestd serve` (SQLite FULL, no destination; run.py's Server),
one client process with one Client (max_queue = --events so nothing is dropped), emit
--events events as fast as the loop goes, then flush(). Throughput = events / (first
emit -> flush returned). Afterwards the server's stored event count is checked against
the number sent. Python runs in a child process (the same script, --child), Node runs
benchmarks/sdk_node.mjs (clients/typescript must be built: `npm run build` there).
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import BENCH, Server, machine, machine_busy_seconds


def child(url: str, events: int, batch: int) -> None:
    from ingestd_client import Client

    client = Client(url, batch_size=batch, max_queue=events + 1)
    t0 = time.perf_counter()
    for i in range(events):
        client.emit(
            {
                "source": "bench",
                "type": "page.viewed",
                "actor_id": "user-48213",
                "data": {"url": "https://shop.example.com/products/12345", "i": i},
            }
        )
    emitted = time.perf_counter()
    flushed = client.flush(timeout=300)
    seconds = time.perf_counter() - t0
    stats = client.stats
    client.close(timeout=1)
    result = {
        "events": events,
        "batch": batch,
        "seconds": seconds,
        "emit_seconds": emitted - t0,
        "flushed": flushed,
        "events_per_s": events / seconds,
        "stats": {"sent": stats.sent, "retried": stats.retried, "dropped": stats.dropped},
    }
    print("SDK_JSON " + json.dumps(result), flush=True)


def one(lang: str, url: str, events: int, batch: int) -> dict[str, Any]:
    if lang == "python":
        cmd = [sys.executable, __file__, "--child", url, "--events", str(events)]
        cmd += ["--batch", str(batch)]
    else:
        cmd = ["node", str(BENCH / "sdk_node.mjs"), "throughput", url, str(events), str(batch)]
    before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic() - t0
    match = re.search(r"^SDK_JSON (.*)$", out.stdout, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{lang} client gave no result:\n{out.stdout}\n{out.stderr}")
    result: dict[str, Any] = json.loads(match.group(1))
    used = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    result["client_cpu_pct"] = 100 * used / wall
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", default="100,1000")
    parser.add_argument("--lang", default="python,node")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--json", type=Path, default=Path("/tmp/ingestd-bench") / "sdk_throughput.json"
    )
    args = parser.parse_args()
    if args.child:
        child(args.child, args.events, int(args.batch))
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="ingestd-sdk-tp-"))
    out: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join(["benchmarks/sdk_throughput.py", *sys.argv[1:]]),
        "runs": [],
    }
    for rep in range(args.repeat):
        for lang in args.lang.split(","):
            for batch in (int(b) for b in args.batch.split(",")):
                name = f"{lang}-{batch}-{rep}"
                server = Server(workdir, name).start_now()
                busy0, cpu0, t0 = machine_busy_seconds(), server.cpu_seconds(), time.time()
                try:
                    r = one(lang, server.url, args.events, batch)
                    wall = time.time() - t0
                    r["server_cpu_pct"] = 100 * (server.cpu_seconds() - cpu0) / wall
                    r["machine_busy_pct"] = 100 * (machine_busy_seconds() - busy0) / wall
                    r["stored"] = server.stored_events()
                finally:
                    server.shutdown()
                r |= {"lang": lang, "repeat": rep + 1}
                out["runs"].append(r)
                print(
                    f"{lang:6s} batch {batch:4d} #{rep + 1}: {r['events_per_s']:,.0f} events/s "
                    f"({r['events']:,} in {r['seconds']:.2f} s, emitting took "
                    f"{r['emit_seconds']:.2f} s), stored {r['stored']:,}, server CPU "
                    f"{r['server_cpu_pct']:.0f}%, client CPU {r['client_cpu_pct']:.0f}%, "
                    f"machine busy {r['machine_busy_pct']:.0f}%",
                    flush=True,
                )
    args.json.write_text(json.dumps(out, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
