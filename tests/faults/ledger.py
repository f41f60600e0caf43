"""The fault campaign's clients and their log (Jepsen-style).

Clients choose every event's id and payload, log every attempt and what it was answered
(in memory and as JSON lines), and resend what got no answer, a 503 or a 429 under the
same id until it is answered. `reconcile` compares the log with the store and a receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

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

    @classmethod
    def replay(cls, log: Path) -> Ledger:
        """A ledger rebuilt from a kept client log (an event's `data.n` is its id's number).

        Bodies cut short are not in the log: stored, they count as ids nobody sent."""
        ledger = cls()
        for line in log.read_text().splitlines():
            doc = msgspec.json.decode(line)
            for event_id in doc["ids"]:
                if event_id not in ledger.events:
                    ledger.new(event_id, int(event_id.lstrip("abcdefghijklmnopqrstuvwxyz")))
            sent = float(doc["t"])
            ledger.note(doc["ids"], sent, doc["status"], doc.get("results"))
            _, status, _ = ledger.timeline[-1]
            ledger.timeline[-1] = (sent + float(doc["dt"]), status, sent)
        return ledger

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
        self.in_flight = 0
        """Requests sent and not yet answered (nor failed): a kill now cuts them off."""
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
            self.in_flight += 1
            try:
                async with session.post(url + path, json=payload) as r:
                    body = await r.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, msgspec.DecodeError, ValueError) as exc:
                self.ledger.note(ids, sent, None, error=type(exc).__name__)
                self.by_url[url].append((time.monotonic(), 0, sent))
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.5)
                continue
            finally:
                self.in_flight -= 1
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
