"""Many `ingestd api` and `ingestd worker` processes on one PostgreSQL database, a counting
webhook receiver, a load of concurrent clients with deliberate duplicates, and the checks
the multi-process tests share (they read PostgreSQL directly, never `/events` paging)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import psycopg
from aiohttp import web

from support import ServerProcess, free_port

SECRET = "whsec_" + "c2NhbGUtdGVzdC1zZWNyZXQtMDEyMzQ1Njc4OQ=="
DESTINATIONS = ("hook-a", "hook-b")


# -- the receiver ------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    delay: float = 0.0


class CountingReceiver:
    """A loopback webhook receiver that dedups on `webhook-id` and counts, per path.

    `script` may decide each reply: `script(path, webhook_id, nth)` where nth counts the
    requests that carried this webhook-id (1 for the first)."""

    def __init__(self, script: Callable[[str, str, int], Reply] | None = None) -> None:
        self.seen: dict[tuple[str, str], list[str]] = {}
        """(path, webhook-id) → the event id of every request that carried it."""
        self.total = 0
        self.script = script
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> CountingReceiver:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        assert site._server is not None
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def distinct(self, path: str) -> int:
        return sum(1 for p, _ in self.seen if p == path)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        webhook_id = request.headers.get("webhook-id", "")
        event_id = msgspec.json.decode(body)["id"] if body else ""
        arrivals = self.seen.setdefault((request.path, webhook_id), [])
        arrivals.append(event_id)
        self.total += 1
        reply = self.script(request.path, webhook_id, len(arrivals)) if self.script else Reply()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, text="ok")


def webhook_toml(receiver: CountingReceiver, names: tuple[str, ...] = DESTINATIONS) -> str:
    parts = []
    for name in names:
        parts.append(
            f'[[destinations]]\nname = "{name}"\nkind = "webhook"\n'
            f'url = "{receiver.url("/" + name)}"\nsecret = "{SECRET}"\n'
            "retry_schedule = [0, 0.5, 1, 1, 1, 2, 2, 2, 5, 5]\n"
        )
    return "\n".join(parts)


# -- the processes -----------------------------------------------------------------------


class Cluster:
    """`apis` `ingestd api` and `workers` `ingestd worker` processes on one PG database."""

    def __init__(
        self,
        tmp: Path,
        pg_url: str,
        toml: str,
        *,
        apis: int = 3,
        workers: int = 3,
        **env: str,
    ) -> None:
        config = tmp / "ingestd.toml"
        config.write_text(toml)
        self.tmp = tmp
        self.pg_url = pg_url
        self.env = {
            "INGESTD_CONFIG": str(config),
            "INGESTD_WEBHOOK_ALLOW_NETS": '["127.0.0.0/8"]',
            "INGESTD_LOG_LEVEL": "warning",
            **env,
        }
        self.apis = [self._process("api", free_port()) for _ in range(apis)]
        self.workers = [self._process("worker", free_port()) for _ in range(workers)]

    def _process(self, command: str, port: int) -> ServerProcess:
        return ServerProcess(
            self.tmp, port=port, command=command, env=self.env, database_url=self.pg_url
        )

    @property
    def urls(self) -> list[str]:
        return [p.url for p in self.apis]

    async def start(self, timeout: float = 60.0) -> None:
        # All at once: migrations and destination seeding race across processes.
        await asyncio.gather(*(p.start(timeout) for p in self.apis + self.workers))

    async def restart(self, proc: ServerProcess, timeout: float = 60.0) -> None:
        """Start a stopped or killed process again (same port, same log file)."""
        await proc.start(timeout)

    async def stop(self) -> dict[str, int | None]:
        codes = await asyncio.gather(*(p.stop() for p in self.apis + self.workers))
        return {str(p.log.name): c for p, c in zip(self.apis + self.workers, codes, strict=True)}

    def logs(self) -> str:
        return "\n".join(f"--- {p.command} {p.log.name}\n{p.logs()[-3000:]}" for p in self.apis)


# -- the load ----------------------------------------------------------------------------


def scale_event(n: int) -> dict[str, Any]:
    return {"source": "scale", "id": f"s{n}", "type": "load.test", "data": {"n": n}}


@dataclass
class Tally:
    """What the clients were answered, per event id."""

    accepted: Counter[str] = field(default_factory=Counter)
    duplicate: Counter[str] = field(default_factory=Counter)
    ambiguous: set[str] = field(default_factory=set)
    """Some attempt got no answer or a 503: stored or not, a later answer may say duplicate."""
    sent: set[str] = field(default_factory=set)
    answered_503: int = 0
    cut_off: int = 0
    races: int = 0
    """Duplicates sent to two API processes at the same moment."""

    def record(self, ids: list[str], status: int, body: Any) -> None:
        if status == 202:
            (event_id,) = ids
            self.accepted[event_id] += 1
        elif status == 200:
            (event_id,) = ids
            assert body["status"] == "duplicate", body
            self.duplicate[event_id] += 1
        elif status == 207:
            for event_id, result in zip(ids, body["results"], strict=True):
                if result["status"] == "accepted":
                    self.accepted[event_id] += 1
                else:
                    assert result["status"] == "duplicate", result
                    self.duplicate[event_id] += 1
        else:
            raise AssertionError(f"unexpected {status} for {ids[:3]}…: {body}")

    def answered(self) -> set[str]:
        return set(self.accepted) | set(self.duplicate)


class Load:
    """`clients` concurrent clients, client c posting to API c % len(urls): one single event,
    then a batch, and so on. Every 20th event (5%) is sent twice to two different API
    processes: half of them at the same moment, half later in another client's stream.
    Unanswered requests and 503s are sent again (the same ids) until answered."""

    def __init__(
        self, urls: list[str], total: int, *, clients: int = 32, batch: int = 20, offset: int = 0
    ) -> None:
        self.urls = urls
        self.clients = clients
        self.batch = batch
        self.tally = Tally()
        self.queues: list[list[Any]] = [[] for _ in range(clients)]
        for n in range(offset, offset + total):
            c = n % clients
            if n % 40 == 0:
                self.queues[c].append(("race", n))
            else:
                self.queues[c].append(n)
                if n % 20 == 0:
                    # The duplicate goes to the next client, whose API process differs.
                    self.queues[(c + 1) % clients].append(n)
        self.done = 0
        self.stopping = False

    async def run(self, deadline: float = 600.0) -> Tally:
        connector = aiohttp.TCPConnector(limit=self.clients * 3, force_close=False)
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.wait_for(
                asyncio.gather(*(self._client(session, c) for c in range(self.clients))),
                deadline,
            )
        return self.tally

    async def _client(self, session: aiohttp.ClientSession, c: int) -> None:
        url = self.urls[c % len(self.urls)]
        other = self.urls[(c + 1) % len(self.urls)]
        queue = self.queues[c]
        i = 0
        single = True
        while i < len(queue):
            item = queue[i]
            if isinstance(item, tuple):
                n = item[1]
                self.tally.races += 1
                await asyncio.gather(
                    self._send(session, url, [n], single=True),
                    self._send(session, other, [n], single=True),
                )
                i += 1
                continue
            take = 1 if single else self.batch
            group: list[int] = []
            while i < len(queue) and len(group) < take and not isinstance(queue[i], tuple):
                group.append(queue[i])
                i += 1
            await self._send(session, url, group, single=len(group) == 1)
            single = not single

    async def _send(
        self, session: aiohttp.ClientSession, url: str, numbers: list[int], *, single: bool
    ) -> None:
        events = [scale_event(n) for n in numbers]
        ids = [e["id"] for e in events]
        self.tally.sent.update(ids)
        path, payload = ("/ingest", events[0]) if single else ("/ingest/batch", {"events": events})
        for attempt in itertools.count():
            try:
                async with session.post(url + path, json=payload) as r:
                    body = await r.json(content_type=None)
                    if r.status == 503:
                        assert r.headers.get("Retry-After"), "a 503 without Retry-After"
                        assert r.content_type == "application/problem+json", r.content_type
                        self.tally.answered_503 += 1
                        self.tally.ambiguous.update(ids)
                        await asyncio.sleep(min(float(r.headers["Retry-After"]), 0.5))
                        continue
                    self.tally.record(ids, r.status, body)
                    self.done += len(ids)
                    return
            except (aiohttp.ClientError, TimeoutError):
                self.tally.cut_off += 1
                self.tally.ambiguous.update(ids)
                if attempt > 400:
                    raise
                await asyncio.sleep(0.05)


async def progress(load: Load, at_least: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while load.done < at_least:
        assert time.monotonic() < deadline, f"only {load.done} events answered"
        await asyncio.sleep(0.02)


# -- the checks --------------------------------------------------------------------------


def stored_ids(pg_url: str, source: str) -> Counter[str]:
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT id FROM events WHERE source = %s", (source,)).fetchall()
    return Counter(r[0] for r in rows)


def deliveries(pg_url: str, source: str) -> list[tuple[str, str, str, str, int]]:
    """(event id, destination, delivery id, state, attempts) of every delivery."""
    with psycopg.connect(pg_url) as conn:
        return conn.execute(
            "SELECT e.id, d.destination, d.delivery_id, d.state, d.attempts "
            "FROM deliveries d JOIN events e ON e.seq = d.event_seq WHERE e.source = %s",
            (source,),
        ).fetchall()


async def until_delivered(pg_url: str, expected: int, timeout: float) -> None:
    """Wait until `expected` deliveries have succeeded (none dead on the way)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with psycopg.connect(pg_url) as conn:
            last = conn.execute(
                "SELECT state, count(*) FROM deliveries GROUP BY state ORDER BY state"
            ).fetchall()
        states = dict(last)
        assert not states.get("dead"), f"dead deliveries: {states}"
        if states.get("succeeded", 0) >= expected:
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"not all {expected} deliveries succeeded within {timeout}s: {last}")


def check_receiver(receiver: CountingReceiver, rows: list[tuple[str, str, str, str, int]]) -> int:
    """Every delivery arrived under its webhook-id with its own event; returns redeliveries."""
    missing = []
    for event_id, destination, delivery_id, state, _ in rows:
        assert state == "succeeded", (event_id, destination, state)
        arrivals = receiver.seen.get(("/" + destination, delivery_id))
        if arrivals is None:
            missing.append((event_id, destination))
            continue
        assert set(arrivals) == {event_id}, f"{delivery_id} carried {set(arrivals)}"
    assert not missing, f"{len(missing)} deliveries never arrived, e.g. {missing[:5]}"
    assert len(receiver.seen) == len(rows), "the receiver got webhook-ids nobody stored"
    return receiver.total - len(receiver.seen)


def leases_of(pg_url: str, pid: int) -> int:
    """Deliveries running under a lease of the worker process `pid`."""
    with psycopg.connect(pg_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM deliveries WHERE state = 'running' AND lease_owner LIKE %s",
            (f"%:{pid}:%",),
        ).fetchone()
    return int(row[0]) if row else 0


async def until_leased_by(pg_url: str, pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if leases_of(pg_url, pid):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"worker {pid} never held a lease")


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(cluster: Cluster) -> Any:
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()
