"""The fault campaign's clients, their log, and its reconciliation with the store and a receiver.

Jepsen-style: clients choose every event's id and payload, log every attempt and what it
was answered (in memory and as JSON lines), and resend what got no answer, a 503 or a 429
under the same id until it is answered. Afterwards `reconcile` reads what the store holds
and what the webhook receiver got, and counts:

- lost: a 202 (or a 200 duplicate, which also says "stored") for an event the store lacks;
- duplicated: an event stored twice, or acknowledged with two 202s;
- unexpected: stored, but never sent whole (a body cut short on purpose, an id nobody
  sent, a payload other than the one sent);
- recovered: stored by an attempt that got no answer (allowed: the resend was a duplicate);
- contradicted: stored by an attempt whose 503 said it was not (its resend was a duplicate);
- missing / duplicate deliveries: a stored event's delivery that never reached the
  receiver with a 2xx, and 2xx arrivals after the first under one webhook-id.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from pg_cluster import CountingReceiver, Reply

SOURCE = "fault"
STATUS_LETTER = {202: "A", 200: "D", 503: "S", 429: "L"}
"""One letter per attempt in an event's history: A accepted, D duplicate, S 503 (not
stored), Q 503 saying the outcome is unknown, L 429, U no answer, X anything else (a 4xx or
500 the campaign never provokes)."""


# -- the clients' log ---------------------------------------------------------------------


@dataclass
class Entry:
    n: int
    """The payload marker (`data.n`) every attempt of this event carries."""
    history: str = ""
    partial: bool = False
    """Sent cut short on purpose and never again: the store must not hold it."""


class Ledger:
    """What the clients sent and were answered, per event and per attempt."""

    def __init__(self, log: Path | None = None) -> None:
        self.events: dict[str, Entry] = {}
        self.timeline: list[tuple[float, int, float]] = []
        """(monotonic time answered, status (0: no answer), time sent) of every attempt."""
        self.statuses: Counter[int] = Counter()
        self._log: io.TextIOWrapper | None = log.open("a") if log else None
        self._encoder = msgspec.json.Encoder()

    def new(self, event_id: str, n: int, *, partial: bool = False) -> None:
        self.events[event_id] = Entry(n, partial=partial)

    def note(
        self,
        ids: list[str],
        sent: float,
        status: int | None,
        results: list[str] | None = None,
        error: str | None = None,
        unknown_outcome: bool = False,
    ) -> None:
        now = time.monotonic()
        self.timeline.append((now, status or 0, sent))
        self.statuses[status or 0] += 1
        if status == 207 and results is not None:
            letters = [{"accepted": "A", "duplicate": "D"}.get(r, "X") for r in results]
        else:
            letter = "U" if status is None else STATUS_LETTER.get(status, "X")
            letter = "Q" if unknown_outcome else letter
            letters = [letter] * len(ids)
        for event_id, letter in zip(ids, letters, strict=True):
            self.events[event_id].history += letter
        if self._log is not None:
            line = {"t": round(sent, 4), "dt": round(now - sent, 4), "ids": ids, "status": status}
            if results is not None:
                line["results"] = results
            if error:
                line["error"] = error
            if unknown_outcome:
                line["outcome"] = "unknown"
            self._log.write(self._encoder.encode(line).decode() + "\n")

    def first(self, status: int, after: float) -> float | None:
        """When the first attempt sent after `after` was answered `status`."""
        return next((t for t, s, sent in self.timeline if sent > after and s == status), None)

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


# -- the clients ---------------------------------------------------------------------------


def event_body(event_id: str, n: int) -> dict[str, Any]:
    return {"source": SOURCE, "id": event_id, "type": "fault.test", "data": {"n": n}}


class Clients:
    """`clients` concurrent senders, client c posting to urls[c % len(urls)]: one event,
    then a batch of `batch`, and so on, at `rate` events/s in all (None: as fast as
    answered). Every `cut_short`-th single event (0: none) is sent with a Content-Length
    larger than its body and the connection closed: never sent whole, never resent.

    `stop` ends the making of new events (once `at_least` were made); what is in flight
    is resent until answered or `give_up` is set."""

    def __init__(
        self,
        ledger: Ledger,
        urls: list[str],
        *,
        clients: int = 16,
        batch: int = 20,
        rate: float | None = None,
        cut_short: int = 0,
        prefix: str = "e",
        timeout: float = 10.0,
    ) -> None:
        self.ledger = ledger
        self.urls = urls
        self.clients = clients
        self.batch = batch
        self.rate = rate
        self.cut_short = cut_short
        self.prefix = prefix
        self.timeout = timeout
        self.stop = asyncio.Event()
        self.give_up = asyncio.Event()
        self.made = 0
        self.at_least = 0
        self.answered = 0
        self.bad_503 = 0
        """503s without a Retry-After or a problem detail."""
        self.by_url: dict[str, list[tuple[float, int, float]]] = {url: [] for url in urls}
        """(monotonic time answered, status (0: no answer), time sent) per API process."""
        self.slowest_answer: dict[int, float] = {}
        self._n = 0

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.clients * 2)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.gather(*(self._client(session, c) for c in range(self.clients)))

    def _make(self, count: int) -> list[str]:
        ids = []
        for _ in range(count):
            n = self._n
            self._n += 1
            event_id = f"{self.prefix}{n}"
            self.ledger.new(event_id, n)
            ids.append(event_id)
        self.made += count
        return ids

    async def _client(self, session: aiohttp.ClientSession, c: int) -> None:
        url = self.urls[c % len(self.urls)]
        per_client = self.rate / self.clients if self.rate else None
        started = time.monotonic()
        made = 0
        single = True
        singles = 0
        while not self.give_up.is_set() and not (self.stop.is_set() and self.made >= self.at_least):
            count = 1 if single else self.batch
            single = not single
            if per_client is not None:
                due = started + made / per_client
                if due > time.monotonic():
                    await asyncio.sleep(due - time.monotonic())
            made += count
            singles += count == 1
            if count == 1 and self.cut_short and singles % self.cut_short == 0:
                await self._cut_short(url, self._make(1)[0])
                continue
            await self._send(session, url, self._make(count))

    async def _send(self, session: aiohttp.ClientSession, url: str, ids: list[str]) -> None:
        events = [event_body(i, self.ledger.events[i].n) for i in ids]
        path, payload = (
            ("/ingest", events[0]) if len(ids) == 1 else ("/ingest/batch", {"events": events})
        )
        pause = 0.05
        while not self.give_up.is_set():
            sent = time.monotonic()
            try:
                async with session.post(url + path, json=payload) as r:
                    body = await r.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, msgspec.DecodeError, ValueError) as exc:
                self.ledger.note(ids, sent, None, error=type(exc).__name__)
                self.by_url[url].append((time.monotonic(), 0, sent))
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.5)
                continue
            answered = time.monotonic()
            self.by_url[url].append((answered, r.status, sent))
            took = answered - sent
            if took > self.slowest_answer.get(r.status, 0.0):
                self.slowest_answer[r.status] = took
            if r.status == 503 and not (
                r.headers.get("Retry-After") and isinstance(body, dict) and body.get("detail")
            ):
                self.bad_503 += 1
            results = None
            if r.status == 207:
                results = [item["status"] for item in body["results"]]
            self.ledger.note(ids, sent, r.status, results, unknown_outcome=said_unknown(body))
            if r.status in (202, 200, 207):
                self.answered += len(ids)
                return
            if r.status in (429, 503):
                retry_after = float(r.headers.get("Retry-After") or 0)
                await asyncio.sleep(min(max(retry_after, 0.05), 0.5))
                continue
            return  # another status: logged as X, a violation; resending would not help

    def first_for(self, url: str, status: int, after: float) -> float | None:
        """When `url` first answered `status` to an attempt sent after `after`."""
        return next((t for t, s, sent in self.by_url[url] if sent > after and s == status), None)

    def slowest(self, status: int) -> float:
        return self.slowest_answer.get(status, 0.0)

    async def _cut_short(self, url: str, event_id: str) -> None:
        """A complete JSON event under a Content-Length 100 bytes longer, then a close."""
        self.ledger.events[event_id].partial = True
        body = msgspec.json.encode(event_body(event_id, self.ledger.events[event_id].n))
        host, port = url.removeprefix("http://").split(":")
        head = (
            f"POST /ingest HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body) + 100}\r\n\r\n"
        ).encode()
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection(host, int(port))
            writer.write(head + body)
            await writer.drain()
            await asyncio.sleep(0.05)  # the server has read the body by now
            writer.transport.abort()


def said_unknown(body: Any) -> bool:
    """A 503 problem saying the commit's outcome is unknown (not: "was not stored")."""
    if not isinstance(body, dict) or body.get("status") != 503:
        return False
    text = f"{body.get('type', '')} {body.get('title', '')} {body.get('detail', '')}".lower()
    return "unknown" in text or "may have been stored" in text


# -- the receiver's log --------------------------------------------------------------------


class Receiving:
    """A CountingReceiver that can be told to fail (503) and logs every 2xx it answered."""

    def __init__(self) -> None:
        self.failing = False
        self.ok: Counter[tuple[str, str]] = Counter()
        self.failed = 0
        self.receiver = CountingReceiver(self._reply)

    def _reply(self, path: str, webhook_id: str, nth: int) -> Reply:
        if self.failing:
            self.failed += 1
            return Reply(503)
        self.ok[(path, webhook_id)] += 1
        return Reply(200)

    async def start(self) -> Receiving:
        await self.receiver.start()
        return self

    async def stop(self) -> None:
        await self.receiver.stop()

    def url(self, path: str) -> str:
        return self.receiver.url(path)


# -- what the store holds ------------------------------------------------------------------


Stored = dict[str, list[int]]
"""Event id → the `data.n` of every stored row with that id."""
Delivery = tuple[str, str, str, str]
"""(event id, destination, delivery id, state)."""

EVENTS_SQL = "SELECT id, data FROM events WHERE source = {p}"
DELIVERIES_SQL = (
    "SELECT e.id, d.destination, d.delivery_id, d.state FROM deliveries d "
    "JOIN events e ON e.seq = d.event_seq WHERE e.source = {p}"
)


def _n_of(data: Any) -> int:
    doc = msgspec.json.decode(data) if isinstance(data, bytes | str) else data
    return int(doc.get("n", -1)) if isinstance(doc, dict) else -1


def read_store(database_url: str) -> tuple[Stored, list[Delivery]]:
    """Every event of the campaign's source and every delivery of them, read directly."""
    stored: Stored = {}
    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            rows = conn.execute(EVENTS_SQL.format(p="?"), (SOURCE,)).fetchall()
            deliveries = conn.execute(DELIVERIES_SQL.format(p="?"), (SOURCE,)).fetchall()
    else:
        import psycopg

        with psycopg.connect(database_url) as conn:
            rows = conn.execute(EVENTS_SQL.format(p="%s"), (SOURCE,)).fetchall()
            deliveries = conn.execute(DELIVERIES_SQL.format(p="%s"), (SOURCE,)).fetchall()
    for event_id, data in rows:
        stored.setdefault(event_id, []).append(_n_of(data))
    return stored, [tuple(d) for d in deliveries]  # type: ignore[misc]


COUNTS_SQL = (
    "SELECT (SELECT count(*) FROM events WHERE source = {p}), "
    "(SELECT count(*) FROM deliveries d JOIN events e ON e.seq = d.event_seq "
    "WHERE e.source = {p} AND d.state = 'succeeded')"
)


def progress(database_url: str) -> tuple[int, int]:
    """(events stored, deliveries succeeded) of the campaign's source."""
    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            row = conn.execute(COUNTS_SQL.format(p="?1"), (SOURCE,)).fetchone()
    else:
        import psycopg

        with psycopg.connect(database_url) as conn:
            row = conn.execute(COUNTS_SQL.format(p="%(s)s"), {"s": SOURCE}).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


async def until_delivered(
    database_url: str, destinations: int, timeout: float, settle: float = 0.0
) -> float | None:
    """Wait until every stored event's deliveries succeeded; the time it took, or None."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        stored, done = await asyncio.to_thread(progress, database_url)
        if stored and done >= stored * destinations:
            await asyncio.sleep(settle)
            return time.monotonic() - start
        await asyncio.sleep(0.5)
    return None


# -- the reconciliation --------------------------------------------------------------------


@dataclass
class Figures:
    scenario: str
    load: str
    faults: int = 0
    sent: int = 0
    acked: int = 0
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0
    unexpected_cut_short: int = 0
    """Of `unexpected`: bodies cut short on purpose that were stored anyway."""
    recovered: int = 0
    contradicted: int = 0
    unanswered: int = 0
    """Events whose clients gave up before a 202 or a duplicate (not stored, or recovered)."""
    missing_deliveries: int | None = None
    duplicate_deliveries: int | None = None
    stray_deliveries: int | None = None
    """Arrivals under a webhook-id no stored delivery has, or carrying another event."""
    recover_s: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)
    """Scenario expectations beyond the counts, by name: True when met."""
    seconds: float = 0.0

    def violations(self, known: Iterable[str] = ()) -> list[str]:
        """What broke the goal (lost = duplicated = unexpected = 0, deliveries whole) or a
        scenario's check; `known` names checks (and "cut_short") that are known defects."""
        known = set(known)
        out = []
        unexpected = self.unexpected - (self.unexpected_cut_short if "cut_short" in known else 0)
        for name, value in (
            ("lost", self.lost),
            ("duplicated", self.duplicated),
            ("unexpected", unexpected),
            ("missing deliveries", self.missing_deliveries or 0),
            ("stray deliveries", self.stray_deliveries or 0),
        ):
            if value:
                out.append(f"{name}: {value}")
        out += [f"check failed: {n}" for n, ok in self.checks.items() if not ok and n not in known]
        return out

    def known_failures(self, known: Iterable[str]) -> list[str]:
        known = set(known)
        out = [n for n, ok in self.checks.items() if not ok and n in known]
        if "cut_short" in known and self.unexpected_cut_short:
            out.append(f"cut_short: {self.unexpected_cut_short} stored")
        return out

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def reconcile(
    figures: Figures,
    ledger: Ledger,
    stored: Stored,
    deliveries: list[Delivery] | None = None,
    receiving: Receiving | None = None,
    destinations: tuple[str, ...] = (),
) -> Figures:
    """Fill the counts of `figures` from the clients' log, the store and the receiver."""
    f = figures
    events = ledger.events
    f.sent = sum(1 for e in events.values() if not e.partial)
    f.statuses = {str(k): v for k, v in sorted(ledger.statuses.items())}
    for event_id, entry in events.items():
        history = entry.history
        rows = stored.get(event_id, [])
        f.acked += "A" in history
        f.unanswered += not entry.partial and "A" not in history and "D" not in history
        if ("A" in history or "D" in history) and not rows:
            f.lost += 1
        if len(rows) > 1 or history.count("A") > 1:
            f.duplicated += 1
        if rows and entry.partial:
            f.unexpected += 1
            f.unexpected_cut_short += 1
        elif rows and any(n != entry.n for n in rows):
            f.unexpected += 1
        if rows and "A" not in history and not entry.partial:
            before = history.split("D", 1)[0]  # the attempts before the first duplicate
            if "U" in before or "Q" in before:
                f.recovered += 1
            elif "S" in before:
                f.contradicted += 1
            else:  # stored, yet every answer before said it was not (a 429, or never sent)
                f.unexpected += 1
    f.unexpected += sum(1 for event_id in stored if event_id not in events)
    if deliveries is not None and receiving is not None:
        _reconcile_deliveries(f, stored, deliveries, receiving, destinations)
    return f


def _reconcile_deliveries(
    f: Figures,
    stored: Stored,
    deliveries: list[Delivery],
    receiving: Receiving,
    destinations: tuple[str, ...],
) -> None:
    by_pair = {(event_id, dest): wid for event_id, dest, wid, _ in deliveries}
    missing = 0
    for event_id in stored:
        for dest in destinations:
            wid = by_pair.get((event_id, dest))
            if wid is None or not receiving.ok.get((f"/{dest}", wid)):
                missing += 1
    f.missing_deliveries = missing
    f.duplicate_deliveries = sum(k - 1 for k in receiving.ok.values() if k > 1)
    known = {(f"/{dest}", wid): event_id for event_id, dest, wid, _ in deliveries}
    stray = 0
    for key, carried in receiving.receiver.seen.items():
        if known.get(key) is None or set(carried) != {known[key]}:
            stray += 1
    f.stray_deliveries = stray
