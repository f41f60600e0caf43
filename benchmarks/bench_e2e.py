"""202 -> webhook receiver latency, open loop, measured with `ingestd bench --e2e`.

    .venv/bin/python benchmarks/bench_e2e.py [--rate 1000] [--duration 10]
        [--backend sqlite|postgres] [--repeat 2]

Starts a fresh `ingestd serve` (benchmarks.harness.Server: a new SQLite file, or a new PostgreSQL
database) with one webhook destination pointing at the bench's built-in receiver, then
runs `ingestd bench --rate R --duration D --e2e --receiver-port P` against it. The bench
sends open loop (latency counted from when each request was due), the receiver records
the first arrival of each event, and the e2e figure is 202 answer -> first POST at the
receiver. Raw results go to a temporary directory (printed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import backends
from benchmarks.harness import Server
from ingestd.bench.process import free_port, ingestd_command

WEBHOOK_TOML = """\
[[destinations]]
name = "bench"
kind = "webhook"
url = "http://127.0.0.1:{port}/hook"
secrets = ["whsec_{secret}"]
max_in_flight = 512
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--backend", choices=backends.BACKENDS, default="sqlite")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--command", default="serve", help="serve, or api (+ one worker)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="ingestd-bench-e2e-"))
    exe = ingestd_command()[0]
    for n in range(1, args.repeat + 1):
        port = free_port()
        config = workdir / f"webhook-{n}.toml"
        config.write_text(WEBHOOK_TOML.format(port=port, secret="A" * 32))
        env = {
            "INGESTD_CONFIG": str(config),
            "INGESTD_WEBHOOK_ALLOW_NETS": '["127.0.0.0/8"]',
        }
        out = workdir / f"bench_e2e-{args.backend}-{args.command}-{n}.json"
        with backends.database(args.backend, workdir, f"e2e-{n}") as url:
            server = Server(
                workdir, f"e2e-{n}", env=env, database_url=url, command=args.command
            ).start_now()
            worker = None
            if args.command == "api":
                worker = Server(workdir, f"worker-{n}", command="worker", database_url=url, env=env)
                worker.launch()
                time.sleep(2)
            cmd = [exe, "bench", "--url", server.url, "--rate", f"{args.rate:g}"]
            cmd += ["--duration", f"{args.duration:g}", "--e2e", "--receiver-port", str(port)]
            cmd += ["--json", str(out), "--quiet"]
            print(f"[{time.strftime('%H:%M:%S')}] {' '.join(cmd[1:])}", flush=True)
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            finally:
                if worker is not None:
                    worker.shutdown()
                server.shutdown()
            print(done.stdout + done.stderr, flush=True)
        if out.exists():
            result = json.loads(out.read_text())
            e2e = result.get("e2e") or {}
            lat = e2e.get("latency_us", {})
            print(
                f"run {n} ({args.backend}, {args.command}): 202 -> receiver P50 "
                f"{lat.get('p50', 0) / 1000:.2f} P99 {lat.get('p99', 0) / 1000:.2f} ms, "
                f"delivered {e2e.get('delivered')} missing {e2e.get('missing')}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
