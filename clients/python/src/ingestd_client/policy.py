"""Retry decisions, free of I/O: backoff with full jitter, Retry-After, per-item verdicts."""

from __future__ import annotations

import enum
import random
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import msgspec

RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
"""Answers after which the same request may succeed later."""


@dataclass(frozen=True)
class Reply:
    """One HTTP answer, as both transports hand it over."""

    status: int
    headers: dict[str, str]
    """Names in lower case."""
    body: bytes

    def json(self) -> Any:
        try:
            return msgspec.json.decode(self.body)
        except msgspec.DecodeError:
            return None

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 problem in the body, or one made from the status line."""
        doc = self.json()
        if isinstance(doc, dict):
            return doc
        return {"status": self.status, "title": f"HTTP {self.status}"}


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often the SDK retries what it could not deliver."""

    max_attempts: int = 8
    """Attempts per event, the first included; then it is spooled or dropped."""
    backoff_base: float = 0.1
    """Seconds; attempt n waits a random time in [0, min(cap, base * 2**(n-1))]."""
    backoff_cap: float = 10.0
    max_retry_after: float = 300.0
    """A Retry-After longer than this is cut to it."""

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter (AWS architecture blog): uniform in [0, exponential ceiling]."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** max(attempt - 1, 0))
        return (rng or random).uniform(0.0, ceiling)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """The wait before the next attempt: the server's Retry-After when it gave one."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return self.backoff(attempt)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Fate(enum.StrEnum):
    """What happened to one event of an attempt."""

    SENT = "sent"
    """Accepted, or a duplicate of an event already accepted: done."""
    REJECTED = "rejected"
    """Refused for good (invalid, key reused with another payload): never retried."""
    RETRY = "retry"
    """Not stored; try again later."""
    TOO_LARGE = "too_large"
    """The request was too large: split it, or refuse the event if it is alone."""


@dataclass(frozen=True)
class Verdict:
    """The outcome of one attempt at sending n events."""

    fates: list[Fate]
    reasons: list[str]
    """Why, for each event that is not SENT (empty string otherwise)."""
    retry_after: float | None = None
    duplicates: int = field(default=0)


def _problem_text(status: int, problem: Any) -> str:
    if isinstance(problem, dict):
        text = problem.get("detail") or problem.get("title") or ""
        status = int(problem.get("status") or status)
        return f"{status} {text}".strip()
    return str(status)


def judge_error(n: int, error: str) -> Verdict:
    """No answer at all (refused, reset, timed out): every event is retried."""
    return Verdict([Fate.RETRY] * n, [error] * n)


def judge_batch(reply: Reply, n: int) -> Verdict:
    """Read the answer to POST /ingest/batch for n events."""
    status = reply.status
    if status in (200, 207):
        doc = reply.json()
        results = doc.get("results") if isinstance(doc, dict) else None
        if isinstance(results, list) and len(results) == n:
            return _judge_items(results)
        return judge_error(n, f"{status} answer without {n} results")
    return judge_whole(reply, n)


def judge_whole(reply: Reply, n: int) -> Verdict:
    """An answer that speaks for all n events at once (any status but 207)."""
    status = reply.status
    if status in (200, 201, 202):
        return Verdict([Fate.SENT] * n, [""] * n, duplicates=n if status == 200 else 0)
    reason = _problem_text(status, reply.problem())
    if status == 413:
        return Verdict([Fate.TOO_LARGE] * n, [reason] * n)
    if status in RETRYABLE_STATUS:
        retry_after = None
        if status in (429, 503):
            retry_after = parse_retry_after(reply.headers.get("retry-after"))
        return Verdict([Fate.RETRY] * n, [reason] * n, retry_after=retry_after)
    return Verdict([Fate.REJECTED] * n, [reason] * n)


def _judge_items(results: list[Any]) -> Verdict:
    fates: list[Fate] = []
    reasons: list[str] = []
    duplicates = 0
    for item in results:
        status = item.get("status") if isinstance(item, dict) else None
        if isinstance(item, dict) and status != "rejected" and "error" not in item:
            # accepted, duplicate, or (with INGESTD_ASYNC_INGESTION=false) processed
            duplicates += status == "duplicate"
            fates.append(Fate.SENT)
            reasons.append("")
            continue
        error = item.get("error") if isinstance(item, dict) else None
        code = int(error.get("status") or 422) if isinstance(error, dict) else 422
        reasons.append(_problem_text(code, error))
        fates.append(Fate.RETRY if code in RETRYABLE_STATUS else Fate.REJECTED)
    return Verdict(fates, reasons, duplicates=duplicates)
