"""The SDK's outbox and batch jobs: where every event ends up, without a network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from ingestd_client.outbox import DropReason, Job, Outbox
from ingestd_client.policy import Fate, RetryPolicy, Verdict
from ingestd_client.spool import Spool


class Drops:
    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], str]] = []

    def __call__(self, event: dict[str, Any], reason: str) -> None:
        self.calls.append((event, reason))

    def reasons(self) -> list[str]:
        return [r for _, r in self.calls]


def outbox(
    drops: Drops, *, spool: Spool | None = None, batch_size: int = 10, max_bytes: int = 10_000
) -> Outbox:
    return Outbox(
        max_queue=100,
        batch_size=batch_size,
        max_batch_bytes=max_bytes,
        policy=RetryPolicy(max_attempts=3, backoff_base=0.01),
        on_drop=drops,
        spool=spool,
    )


def fill(box: Outbox, n: int) -> None:
    for i in range(n):
        box.queue.append(({"source": "t", "data": {"i": i}}, 1_700_000_000.0 + i))


def all_(fate: Fate, n: int, reason: str = "") -> Verdict:
    return Verdict([fate] * n, [reason if fate is not Fate.SENT else ""] * n)


def test_take_respects_batch_size_and_bytes() -> None:
    drops = Drops()
    box = outbox(drops, batch_size=4)
    fill(box, 10)
    assert [len(box.take()) for _ in range(3)] == [4, 4, 2]
    small = outbox(drops, max_bytes=250)
    fill(small, 5)
    first = small.take()
    assert 1 <= len(first) < 5
    assert sum(len(i.body) + 1 for i in first) <= 250
    assert small.pending() == 5 - len(first)
    assert len(first) + len(small.take()) + len(small.take()) == 5


def test_unserializable_events_are_reported_not_sent() -> None:
    drops = Drops()
    box = outbox(drops)
    box.queue.append(({"source": "t", "data": {"x": object()}}, 0.0))
    fill(box, 1)
    assert len(box.take()) == 1
    assert drops.reasons()[0].startswith(DropReason.UNSERIALIZABLE)


def test_a_rejected_item_is_reported_and_never_retried() -> None:
    drops = Drops()
    box = outbox(drops)
    fill(box, 3)
    job = Job(box, box.take(), max_attempts=3)
    verdict = Verdict([Fate.SENT, Fate.REJECTED, Fate.SENT], ["", "422 bad type", ""])
    assert job.record(verdict) == 0.0
    assert job.body() is None
    assert box.sent == 2 and box.dropped == 1 and box.retried == 0
    event, reason = drops.calls[0]
    assert reason == "rejected: 422 bad type"
    assert event["data"] == {"i": 1} and "id" in event


def test_retries_resend_the_same_bytes_then_give_up() -> None:
    drops = Drops()
    box = outbox(drops)
    fill(box, 2)
    job = Job(box, box.take(), max_attempts=3)
    first = job.body()
    retry_after = Verdict([Fate.RETRY] * 2, ["503 busy"] * 2, retry_after=4.0)
    assert job.record(retry_after) == 4.0
    assert job.body() == first
    assert 0.0 <= job.record(all_(Fate.RETRY, 2, "ConnectionRefusedError")) <= 0.02
    assert job.body() == first
    assert job.record(all_(Fate.RETRY, 2, "ConnectionRefusedError")) == 0.0
    assert job.body() is None
    assert box.retried == 4
    assert drops.reasons() == ["attempts_exhausted: ConnectionRefusedError"] * 2


def test_only_the_failed_items_are_retried() -> None:
    drops = Drops()
    box = outbox(drops)
    fill(box, 3)
    job = Job(box, box.take(), max_attempts=3)
    job.record(Verdict([Fate.SENT, Fate.RETRY, Fate.SENT], ["", "503 busy", ""]))
    assert [e["data"]["i"] for e in msgspec.json.decode(job.body() or b"")["events"]] == [1]
    job.record(all_(Fate.SENT, 1))
    assert box.sent == 3 and box.retried == 1 and not drops.calls


def test_too_large_splits_then_refuses_a_lone_event() -> None:
    drops = Drops()
    box = outbox(drops)
    fill(box, 3)
    job = Job(box, box.take(), max_attempts=1)
    job.record(all_(Fate.TOO_LARGE, 3, "413 too large"))
    assert job.size == 1  # [0] then [1, 2]
    job.record(all_(Fate.TOO_LARGE, 1, "413 too large"))
    assert job.size == 2
    job.record(all_(Fate.SENT, 2))
    assert job.body() is None
    assert box.sent == 2
    assert drops.reasons() == ["rejected: 413 too large"]


def test_give_up_goes_to_the_spool_when_there_is_one(tmp_path: Path) -> None:
    drops = Drops()
    spool = Spool(tmp_path / "spool.db")
    box = outbox(drops, spool=spool)
    fill(box, 3)
    job = Job(box, box.take(), max_attempts=1)
    job.record(Verdict([Fate.RETRY, Fate.REJECTED, Fate.RETRY], ["503", "422 no", "503"]))
    assert box.spooled == 2 and box.spool_rows == 2 and len(spool) == 2
    assert drops.reasons() == ["rejected: 422 no"]  # a refusal is never spooled

    resend = box.from_spool()
    assert [i.event["data"]["i"] for i in resend] == [0, 2]
    job = Job(box, resend, max_attempts=1)
    job.record(Verdict([Fate.RETRY, Fate.SENT], ["503", ""]))
    assert len(spool) == 1 and box.spooled == 2  # a failed resend stays, not re-spooled
    job = Job(box, box.from_spool(), max_attempts=1)
    job.record(all_(Fate.SENT, 1))
    assert len(spool) == 0 and box.spool_rows == 0 and box.sent == 2
    spool.close()


def test_spool_keeps_order_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "spool.db"
    spool = Spool(path)
    spool.put([("a", b'{"id":"a"}'), ("b", b'{"id":"b"}')], "closed")
    spool.close()
    again = Spool(path)
    rows = again.take(10, 1_000_000)
    assert [r.event_id for r in rows] == ["a", "b"]
    assert [r.event_id for r in again.take(10, 12)] == ["a"]  # the first row always fits
    again.delete([rows[0].seq])
    assert len(again) == 1
    again.close()


def test_overflow_is_reported_with_its_reason_and_an_id() -> None:
    drops = Drops()
    box = outbox(drops)
    box.overflow({"source": "t"}, DropReason.QUEUE_FULL)
    [(event, reason)] = drops.calls
    assert reason == "queue_full" and event["id"]


def test_drain_gives_up_everything_queued(tmp_path: Path) -> None:
    drops = Drops()
    box = outbox(drops, batch_size=2)
    fill(box, 5)
    box.drain(DropReason.CLOSED)
    assert drops.reasons() == ["closed"] * 5 and box.pending() == 0


def test_a_failing_on_drop_is_contained() -> None:
    def boom(event: dict[str, Any], reason: str) -> None:
        raise RuntimeError("callback bug")

    box = Outbox(
        max_queue=1,
        batch_size=1,
        max_batch_bytes=1000,
        policy=RetryPolicy(),
        on_drop=boom,
        spool=None,
    )
    box.overflow({"source": "t"}, DropReason.QUEUE_FULL)
    assert box.dropped == 1
