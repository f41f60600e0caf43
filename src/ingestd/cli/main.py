"""The `ingestd` command: serve, api, worker, migrate, drain, status, prune, config, send."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import msgspec

from ingestd.cli.common import run_async, wait_for_store, with_store
from ingestd.config import Settings, load_settings, masked
from ingestd.errors import ConfigError, IngestdError
from ingestd.obs import logs

COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {}


def command(name: str) -> Callable[[Callable[[argparse.Namespace, Settings], int]], Any]:
    def register(fn: Callable[[argparse.Namespace, Settings], int]) -> Any:
        COMMANDS[name] = fn
        return fn

    return register


def serve_http(args: argparse.Namespace, settings: Settings, role: str) -> int:
    import uvicorn

    from ingestd.api import http_server
    from ingestd.api.exposure import check_exposure, loopback_only

    if args.allow_unauthenticated:
        settings = settings.model_copy(update={"allow_unauthenticated": True})
    if not settings.api_keys and not loopback_only(args.host):
        # Keys made with `ingestd keys create` count too: look before refusing.
        stored = with_store(settings, lambda store: _count_keys(store))
        check_exposure(settings, args.host, stored_keys=stored > 0)
    else:
        check_exposure(settings, args.host)
    http_server.configure(http_server.HttpLimits.from_settings(settings))

    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "lifespan": "on",
        "access_log": False,
        "log_level": settings.log_level,
        "timeout_graceful_shutdown": int(settings.shutdown_grace),
        "loop": "uvloop",
        # httptools with deadlines, a connection cap and head limits (api/http_server.py)
        "http": "ingestd.api.http_server:GuardedHttpProtocol",
        "backlog": 4096,
        # Per-request middleware and headers we do not need cost the fast path ~10%.
        "proxy_headers": False,
        "server_header": False,
        "date_header": False,
    }
    if settings.log_format == "json":
        options["log_config"] = None  # uvicorn's records go to the root logger's JSON lines
    workers = getattr(args, "workers", 1) or 1
    if workers > 1:
        uvicorn.run("ingestd.api.app:create_api_app", factory=True, workers=workers, **options)
        return 0
    from ingestd.api.app import IngestdApp

    app = IngestdApp(settings, "serve" if role == "serve" else "api")
    server = uvicorn.Server(uvicorn.Config(app, **options))
    # uvicorn re-raises the signal it caught once shutdown is complete; with the default
    # disposition that turns a clean SIGTERM drain into exit status -15. The graceful
    # shutdown has already happened by then, so the re-raised signal is ignored.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: None)
    server.run()
    return 0 if server.started else 1


async def _count_keys(store: Any) -> int:
    return len(await store.api_keys())


@command("serve")
def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    return serve_http(args, settings, "serve")


@command("api")
def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    return serve_http(args, settings, "api")


@command("worker")
def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from ingestd.api.worker_port import DEFAULT_PORT, WorkerPort

    log = logging.getLogger("ingestd")
    from ingestd.runtime import Runtime

    async def main() -> int:
        # Started beside PostgreSQL (one unit file, a compose file), a worker often comes
        # up before it accepts connections: wait for it rather than exit at once.
        await wait_for_store(settings, args.store_wait)
        runtime = Runtime(settings, "worker")
        await runtime.start()
        port = None
        number = DEFAULT_PORT if args.metrics_port is None else args.metrics_port
        if number:
            worker = runtime.worker
            alive = worker.failure if worker is not None else lambda: None
            port = WorkerPort(runtime.store, alive, host=args.metrics_host, port=number)
            try:
                await port.start()
            except OSError as exc:
                where = f"{args.metrics_host}:{number} ({exc.strerror})"
                if args.metrics_port is not None:  # asked for: refuse to run unobservable
                    await runtime.stop()
                    raise ConfigError(
                        f"cannot serve the worker's metrics on {where}: choose another "
                        "--metrics-port, or 0 for none"
                    ) from None
                # The default port is taken, most likely by another worker on this host:
                # run, and say how to give this one a port of its own.
                log.warning(
                    "worker serves no metrics: the default port %s is taken; give each "
                    "worker on a host its own --metrics-port (0: none)",
                    where,
                )
                port = None
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info(
            "worker %s running%s",
            runtime.worker and runtime.worker.id,
            f"; metrics, health and ready on http://{args.metrics_host}:{number}" if port else "",
        )
        await stop.wait()
        if port is not None:
            await port.stop()
        await runtime.stop()
        return 0

    return run_async(main())


@command("migrate")
def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    async def done(store: Any) -> int:
        print(f"migrated {masked(settings.database_url)}")
        return 0

    return with_store(settings, done)


@command("drain")
def cmd_drain(args: argparse.Namespace, settings: Settings) -> int:
    async def wait(store: Any) -> int:
        deadline = time.monotonic() + args.timeout
        while True:
            depth = await store.depth()
            if depth.backlog == 0:
                print(f"drained: nothing pending ({depth.dead} dead letters)")
                return 0
            if time.monotonic() > deadline:
                print(f"not drained after {args.timeout:g}s: {depth}", file=sys.stderr)
                return 1
            print(
                f"waiting: {depth.pending} pending, {depth.running} running, "
                f"{depth.failed} retrying",
                file=sys.stderr,
            )
            await asyncio.sleep(args.interval)

    return with_store(settings, wait)


@command("status")
def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from ingestd.api.views import status_body

    async def show(store: Any) -> int:
        report = await store.status(args.tenant, args.event_id)
        if report is None:
            print(f"no event with id {args.event_id!r}", file=sys.stderr)
            return 1
        print(json.dumps(status_body(report), indent=2))
        return 0

    return with_store(settings, show)


@command("prune")
def cmd_prune(args: argparse.Namespace, settings: Settings) -> int:
    async def prune(store: Any) -> int:
        pruned = await store.prune(
            time.time(),
            retention=settings.retention,
            dead_retention=settings.dead_retention,
            idempotency_ttl=settings.idempotency_ttl,
        )
        print(json.dumps(msgspec.to_builtins(pruned)))
        return 0

    return with_store(settings, prune)


@command("config")
def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(masked(settings.model_dump(mode="json")), indent=2))
    return 0


@command("send")
def cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    event: dict[str, Any] = {
        "source": args.source,
        "type": args.type,
        "data": json.loads(args.data),
    }
    if args.id:
        event["id"] = args.id
    if not args.url.startswith(("http://", "https://")):
        print("--url must be an http(s) URL", file=sys.stderr)
        return 2
    headers = {"content-type": "application/json"}
    if args.api_key:
        headers["authorization"] = f"Bearer {args.api_key}"
    request = urllib.request.Request(  # noqa: S310 - scheme checked above
        args.url.rstrip("/") + "/ingest",
        data=json.dumps(event).encode(),
        headers=headers,
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            print(response.status, response.read().decode())
            return 0
    except urllib.error.HTTPError as exc:
        print(exc.code, exc.read().decode(), file=sys.stderr)
        return 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ingestd", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    for name, helptext in (
        ("serve", "API and worker in one process (the embedded case)"),
        ("api", "the HTTP API only"),
    ):
        s = sub.add_parser(name, help=helptext)
        s.add_argument(
            "--host",
            default="127.0.0.1",
            help="address to listen on (other than loopback: needs API keys)",
        )
        s.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
        s.add_argument(
            "--allow-unauthenticated",
            action="store_true",
            help="serve a non-loopback --host without API keys (every route open to all)",
        )
        if name == "api":
            s.add_argument("--workers", type=int, default=1, help="API processes on one port")
    w = sub.add_parser("worker", help="the delivery worker only")
    w.add_argument(
        "--metrics-host", default="127.0.0.1", help="address of /metrics, /health, /ready"
    )
    w.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="port of the worker's /metrics, /health and /ready (default 9464, skipped with "
        "a warning when taken; 0: none)",
    )
    w.add_argument(
        "--store-wait",
        type=float,
        default=60.0,
        help="seconds to wait (retrying with backoff) for a store that is not up yet, such "
        "as PostgreSQL still starting, before giving up with exit status 2 (default 60)",
    )
    sub.add_parser("migrate", help="apply database migrations")
    d = sub.add_parser("drain", help="wait until no delivery is pending, running or retrying")
    d.add_argument(
        "--timeout", type=float, default=300.0, help="seconds before giving up (exit status 1)"
    )
    d.add_argument("--interval", type=float, default=0.5, help="seconds between two looks")
    s = sub.add_parser("status", help="an event's processing status")
    s.add_argument("event_id", help="the event's id (as the 202 named it)")
    s.add_argument("--tenant", default="default", help="the tenant of an API key's events")
    sub.add_parser("prune", help="drop data past its retention now")
    sub.add_parser("config", help="print the settings (secrets masked)")
    s = sub.add_parser("send", help="POST one event to a running ingestd")
    s.add_argument("--url", default="http://127.0.0.1:8000", help="the ingestd to send to")
    s.add_argument("--source", required=True, help="the event's source")
    s.add_argument("--type", default=None, help="the event's type")
    s.add_argument("--id", default=None, help="the event's id (default: the server makes one)")
    s.add_argument("--data", default="{}", help="the event's data, a JSON object")
    s.add_argument(
        "--api-key",
        default=os.environ.get("INGESTD_API_KEY"),
        help="sent as Authorization: Bearer (default: $INGESTD_API_KEY)",
    )
    for module_name in PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if not module_name.startswith(exc.name or "?"):
                raise
            continue
        module.add_commands(sub, COMMANDS)
    return p


PLUGINS = ("ingestd.cli.dlq", "ingestd.cli.keys", "ingestd.cli.backup", "ingestd.bench.cli")
"""Modules that add subcommands: each has `add_commands(subparsers, commands)`, where
`commands[name]` is a function `(args, settings) -> exit code`."""


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = load_settings()
        logs.configure(settings.log_level, settings.log_format)
        with contextlib.suppress(KeyboardInterrupt):
            return COMMANDS[args.command](args, settings)
        return 130
    except IngestdError as exc:
        print(f"ingestd: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
