"""The fault campaign's reconciliation: the clients' log against the store and a receiver.

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
import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ledger import SOURCE, Ledger
from pg_cluster import CountingReceiver, Reply

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
