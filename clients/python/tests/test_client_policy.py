"""The SDK's pure parts: ids, envelopes, retry policy and reading answers."""

from __future__ import annotations

import random
import re
import time
from email.utils import formatdate

import msgspec
import pytest

from ingestd_client.envelope import batch_body, new_event_id, prepare, rfc3339
from ingestd_client.policy import (
    Fate,
    Reply,
    RetryPolicy,
    judge_batch,
    judge_error,
    parse_retry_after,
)

UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def reply(status: int, body: object = None, **headers: str) -> Reply:
    data = b"" if body is None else msgspec.json.encode(body)
    return Reply(status, {k.replace("_", "-"): v for k, v in headers.items()}, data)


def test_event_ids_are_uuid7_and_time_ordered() -> None:
    ids = [new_event_id(1_700_000_000 + i / 1000) for i in range(50)]
    assert all(UUID7.match(i) for i in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_prepare_assigns_id_and_time_once() -> None:
    event = {"source": "s", "data": {}}
    event_id, body = prepare(event, 1_700_000_000.25)
    assert event["id"] == event_id and UUID7.match(event_id)
    assert event["occurred_at"] == "2023-11-14T22:13:20.250000Z"
    assert msgspec.json.decode(body) == event
    # The same (already prepared) event keeps its id and bytes.
    assert prepare(dict(event), time.time()) == (event_id, body)


@pytest.mark.parametrize(
    ("given", "expected"),
    [({"id": "a1"}, "a1"), ({"event_id": "b2"}, "b2"), ({"id": None, "event_id": "c"}, "c")],
)
def test_prepare_keeps_the_callers_id(given: dict[str, str], expected: str) -> None:
    event = {"source": "s", **given}
    assert prepare(event, 0.0)[0] == expected
    assert "id" not in event or event["id"] in (expected, None)
    # No time added: emitting the same named event again must stay a duplicate.
    assert "occurred_at" not in event


def test_prepare_keeps_the_callers_time_under_either_name() -> None:
    event = {"source": "s", "timestamp": "2024-01-01T00:00:00Z"}
    prepare(event, 0.0)
    assert "occurred_at" not in event


def test_prepare_refuses_what_is_not_json() -> None:
    with pytest.raises(TypeError):
        prepare({"source": "s", "data": {"x": object()}}, 0.0)


def test_rfc3339_rounds_into_the_next_second() -> None:
    assert rfc3339(0.9999999) == "1970-01-01T00:00:01.000000Z"


def test_batch_body_is_the_documented_shape() -> None:
    assert msgspec.json.decode(batch_body([b'{"a":1}', b'{"b":2}'])) == {
        "events": [{"a": 1}, {"b": 2}]
    }


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_cap=4.0)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 4.0)]:
        delays = [policy.backoff(attempt, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # spread over the whole range
        assert min(delays) < ceiling * 0.2


def test_retry_after_wins_over_backoff_and_is_capped() -> None:
    policy = RetryPolicy(max_retry_after=30.0)
    assert policy.delay(1, 7.0) == 7.0
    assert policy.delay(1, 3600.0) == 30.0
    assert 0 <= policy.delay(1, None) <= policy.backoff_base


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-2") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = time.time()
    later = parse_retry_after(formatdate(now + 120, usegmt=True), now=now)
    assert later is not None and 118 <= later <= 121


def test_per_item_results_are_read_in_order() -> None:
    answer = reply(
        207,
        {
            "results": [
                {"status": "accepted", "id": "a"},
                {"status": "duplicate", "id": "b"},
                {"status": "rejected", "error": {"status": 422, "detail": "source is required"}},
                {"status": "rejected", "error": {"status": 503, "title": "Service Unavailable"}},
            ]
        },
    )
    verdict = judge_batch(answer, 4)
    assert verdict.fates == [Fate.SENT, Fate.SENT, Fate.REJECTED, Fate.RETRY]
    assert verdict.reasons[2] == "422 source is required"
    assert verdict.duplicates == 1


@pytest.mark.parametrize("status", [429, 503])
def test_overload_answers_are_retried_after_retry_after(status: int) -> None:
    verdict = judge_batch(reply(status, {"title": "busy"}, retry_after="2"), 3)
    assert verdict.fates == [Fate.RETRY] * 3
    assert verdict.retry_after == 2.0


@pytest.mark.parametrize(
    ("status", "fate"),
    [
        (500, Fate.RETRY),
        (502, Fate.RETRY),
        (400, Fate.REJECTED),
        (401, Fate.REJECTED),
        (413, Fate.TOO_LARGE),
    ],
)
def test_whole_batch_answers(status: int, fate: Fate) -> None:
    verdict = judge_batch(reply(status, {"status": status, "detail": "why"}), 2)
    assert verdict.fates == [fate] * 2
    assert verdict.reasons == [f"{status} why"] * 2
    assert verdict.retry_after is None


def test_a_207_with_the_wrong_number_of_results_is_retried() -> None:
    assert judge_batch(reply(207, {"results": []}), 2).fates == [Fate.RETRY] * 2
    assert judge_batch(Reply(207, {}, b"not json"), 1).fates == [Fate.RETRY]


def test_no_answer_is_retried() -> None:
    verdict = judge_error(2, "ConnectionRefusedError")
    assert verdict.fates == [Fate.RETRY] * 2
    assert verdict.reasons == ["ConnectionRefusedError"] * 2
