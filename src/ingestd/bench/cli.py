"""The `ingestd bench` subcommand (a plugin of ingestd.cli)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import math
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from ingestd.bench.load import LoadSpec
from ingestd.bench.process import IngestdProcess, ProcessFailed
from ingestd.bench.receiver import Receiver
from ingestd.bench.report import PlotUnavailable, compare_table, plot, table, write_json
from ingestd.bench.runner import BenchError, run_load

EPILOG = """\
examples:
  ingestd bench --rate 2000 --duration 30                 open loop, 2000 req/s for 30 s
  ingestd bench --concurrency 64 --requests 100000        closed loop, 64 connections
  ingestd bench --rate 500 --batch 50 --duplicates 0.05   batches of 50, 5% resent ids
  ingestd bench --rate 200 --e2e --receiver-port 9999     202 → delivered (configure a
                                                          webhook destination to the receiver)
  ingestd bench --compare --rate 1000 --duration 10       async vs sync ingestion, own servers
  ingestd bench --path /_bench/noop --concurrency 128     the generator's ceiling
                                                          (server with INGESTD_BENCH_NOOP=true)
"""


DESCRIPTION = """\
Load-test ingestd, or any endpoint taking the same requests. Open loop at --rate (latency
counted from each request's intended send time, so coordinated omission is corrected) or
closed loop at --concurrency; single events or --batch; a --duplicates ratio; --e2e times
202 -> delivered through a built-in receiver. Shows a progress bar, ends with a table
(requests, throughput, min/avg/P50/P95/P99/P99.9/max, errors by status), writes --json and
a --plot PNG. --compare runs the same load on its own servers in async then sync mode.
"""


def add_commands(sub: Any, commands: dict[str, Callable[[argparse.Namespace, Any], int]]) -> None:
    p = sub.add_parser(
        "bench",
        help="load-test an ingestd (latency percentiles, throughput, errors)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--url", default="http://127.0.0.1:8000", help="base URL of the server")
    p.add_argument("--path", default=None, help="default /ingest, or /ingest/batch with --batch")
    load = p.add_argument_group("load")
    load.add_argument("--rate", type=float, default=None, help="open loop: requests per second")
    load.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="closed loop: connections each sending as soon as answered (default 64); "
        "with --rate: the most requests in flight (default 256)",
    )
    load.add_argument("--duration", type=float, default=None, help="seconds (default 10)")
    load.add_argument("--requests", type=int, default=None, help="total requests instead")
    load.add_argument("--batch", type=int, default=0, help="events per request (/ingest/batch)")
    load.add_argument(
        "--duplicates", type=float, default=0.0, help="ratio of events resending an earlier id"
    )
    load.add_argument("--source", default="bench", help="the events' source")
    load.add_argument("--type", dest="event_type", default="bench.event", help="the events' type")
    load.add_argument("--payload-bytes", type=int, default=0, help="padding in each event's data")
    load.add_argument(
        "--header", action="append", default=[], help="extra request header 'Name: value'"
    )
    load.add_argument("--processes", type=int, default=None, help="sender processes (auto)")
    load.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    e2e = p.add_argument_group("end to end")
    e2e.add_argument(
        "--e2e", action="store_true", help="time 202 → delivery through the built-in receiver"
    )
    e2e.add_argument("--receiver-host", default="127.0.0.1", help="where the receiver listens")
    e2e.add_argument("--receiver-port", type=int, default=0, help="default: any free port")
    e2e.add_argument(
        "--receiver-delay", type=float, default=0.0, help="seconds the receiver takes to answer"
    )
    e2e.add_argument(
        "--e2e-wait", type=float, default=30.0, help="seconds to wait for the last deliveries"
    )
    cmp = p.add_argument_group("compare")
    cmp.add_argument(
        "--compare",
        action="store_true",
        help="start own `ingestd serve` servers (temporary SQLite) in async then sync "
        "ingestion mode, run the same load on each, print both side by side",
    )
    out = p.add_argument_group("output")
    out.add_argument("--json", type=Path, default=None, help="write the result as JSON")
    out.add_argument("--plot", type=Path, default=None, help="write a PNG latency plot")
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    commands["bench"] = cmd_bench


def spec_from_args(args: argparse.Namespace) -> LoadSpec:
    if args.rate is not None and args.rate <= 0:
        raise ValueError("--rate must be positive")
    if args.duration is not None and args.requests is not None:
        raise ValueError("give --duration or --requests, not both")
    if args.requests is not None and args.requests < 1:
        raise ValueError("--requests must be at least 1")
    if args.duration is not None and args.duration <= 0:
        raise ValueError("--duration must be positive")
    if not 0.0 <= args.duplicates < 1.0:
        raise ValueError("--duplicates is a ratio in [0, 1)")
    if args.batch < 0:
        raise ValueError("--batch must be positive")
    if not args.url.startswith("http://"):
        raise ValueError("--url must be an http:// URL (the bench speaks plain HTTP/1.1)")
    open_loop = args.rate is not None
    concurrency = args.concurrency or (256 if open_loop else 64)
    if concurrency < 1:
        raise ValueError("--concurrency must be at least 1")
    cores = os.cpu_count() or 1
    if args.processes:
        processes = args.processes
    elif open_loop:
        processes = min(cores, 4, max(1, math.ceil(args.rate / 8000)))
    else:
        processes = min(cores, 4, max(1, concurrency // 8))
    processes = max(1, min(processes, concurrency))
    headers = []
    for raw in args.header:
        name, sep, value = raw.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"--header wants 'Name: value', got {raw!r}")
        headers.append((name.strip(), value.strip()))
    duration = args.duration if args.duration is not None or args.requests else 10.0
    return LoadSpec(
        url=args.url.rstrip("/"),
        path=args.path or ("/ingest/batch" if args.batch else "/ingest"),
        rate=args.rate,
        concurrency=concurrency,
        duration=duration if args.requests is None else None,
        requests=args.requests,
        batch=args.batch,
        duplicates=args.duplicates,
        source=args.source,
        event_type=args.event_type,
        payload_bytes=max(0, args.payload_bytes),
        processes=processes,
        run_id=f"bench{int(time.time()) % 100000:05d}{secrets.token_hex(3)}",
        e2e=args.e2e,
        timeout=args.timeout,
        headers=tuple(headers),
    )


def cmd_bench(args: argparse.Namespace, settings: Any) -> int:
    try:
        spec = spec_from_args(args)
    except ValueError as exc:
        print(f"ingestd bench: {exc}", file=sys.stderr)
        return 2
    main = compare(args, spec) if args.compare else single(args, spec)
    try:
        return _run(main)
    except BenchError as exc:
        print(f"ingestd bench: {exc}", file=sys.stderr)
        return 1
    except PlotUnavailable as exc:
        print(f"ingestd bench: {exc}", file=sys.stderr)
        return 2


def _run(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)


def _progress(args: argparse.Namespace) -> Any:
    return None if args.quiet else sys.stderr


async def single(args: argparse.Namespace, spec: LoadSpec) -> int:
    receiver: Receiver | None = None
    if spec.e2e:
        receiver = Receiver(args.receiver_host, args.receiver_port, args.receiver_delay)
        await receiver.start()
        print(
            f"receiver listening at {receiver.url}: the server must have a webhook destination "
            "delivering there (the bench configures nothing on it)",
            file=sys.stderr,
        )
    try:
        result = await run_load(
            spec, progress=_progress(args), receiver=receiver, e2e_wait=args.e2e_wait
        )
    finally:
        if receiver is not None:
            await receiver.stop()
    print(table(result))
    if args.json:
        write_json(args.json, result)
    if args.plot:
        plot(args.plot, [("run", result)])
    return 0


# -- --compare: own servers, async then sync ---------------------------------------------


def has_webhooks() -> bool:
    with contextlib.suppress(ImportError):
        return importlib.util.find_spec("ingestd.destinations.webhook") is not None
    return False


def destination_toml(receiver: Receiver) -> str:
    return (
        "[[destinations]]\n"
        'name = "bench-receiver"\n'
        'kind = "webhook"\n'
        f"url = {json.dumps(receiver.url)}\n"
    )


def own_server(workdir: Path, name: str, env: dict[str, str]) -> IngestdProcess:
    """`ingestd serve` on 127.0.0.1, a free port and a temporary SQLite file."""
    return IngestdProcess(
        "serve",
        log=workdir / f"server-{name}.log",
        env={
            "INGESTD_DATABASE_URL": f"sqlite:///{workdir}/{name}.db",
            "INGESTD_LOG_LEVEL": "warning",
            **env,
        },
    )


async def compare(args: argparse.Namespace, spec: LoadSpec) -> int:
    receiver = Receiver("127.0.0.1", 0, args.receiver_delay)
    await receiver.start()
    webhooks = has_webhooks()
    if spec.e2e and not webhooks:
        raise BenchError("--e2e --compare needs the webhook destination kind in this ingestd")
    results: list[tuple[str, dict[str, Any]]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="ingestd-bench-") as tmp:
            workdir = Path(tmp)
            env = {"INGESTD_WEBHOOK_ALLOW_NETS": '["127.0.0.0/8"]'}
            if webhooks:
                config = workdir / "ingestd.toml"
                config.write_text(destination_toml(receiver))
                env["INGESTD_CONFIG"] = str(config)
                print(
                    f"servers deliver every event to the built-in receiver {receiver.url}"
                    + (
                        f" (answering after {args.receiver_delay:g} s)"
                        if args.receiver_delay
                        else ""
                    ),
                    file=sys.stderr,
                )
            else:
                print(
                    "no webhook destination kind here: servers have no destination", file=sys.stderr
                )
            for name, flag in (("async", "true"), ("sync", "false")):
                server = own_server(workdir, name, {**env, "INGESTD_ASYNC_INGESTION": flag})
                try:
                    await server.start()
                except ProcessFailed as exc:
                    raise BenchError(str(exc)) from None
                try:
                    run_spec = replace(spec, url=server.url, run_id=f"{spec.run_id}{name}")
                    result = await run_load(
                        run_spec,
                        progress=_progress(args),
                        receiver=receiver,
                        e2e_wait=args.e2e_wait,
                        label=f"{name:<5} ",
                    )
                finally:
                    await server.stop()
                result["server_mode"] = f"INGESTD_ASYNC_INGESTION={flag}"
                results.append((name, result))
    finally:
        await receiver.stop()
    for name, result in results:
        print(f"== {name} ingestion ({result['server_mode']})")
        print(table(result))
        print()
    print("== async (before) vs sync (after), same load")
    print(compare_table(results[0][1], results[1][1], ("async", "sync")))
    if args.json:
        write_json(args.json, {"compare": dict(results)})
    if args.plot:
        plot(args.plot, results)
    return 0
