// The SDK's pure parts: ids, envelopes, retry policy and reading answers.
import assert from "node:assert/strict";
import { test } from "node:test";

import { newEventId } from "../src/index.js";
import { batchBody, prepare } from "../src/envelope.js";
import { backoffMs, DEFAULT_POLICY, delayMs, judgeBatch, parseRetryAfter, type Answer } from "../src/policy.js";

const UUID7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function answer(status: number, body: unknown, headers: Record<string, string> = {}): Answer {
  return { status, body, headers: new Headers(headers) };
}

test("event ids are UUIDv7 and time-ordered", () => {
  const ids = Array.from({ length: 50 }, (_, i) => newEventId(1_700_000_000_000 + i));
  assert.ok(ids.every((id) => UUID7.test(id)));
  assert.deepEqual([...ids].sort(), ids);
  assert.equal(new Set(ids).size, ids.length);
});

test("prepare assigns an id and a time once, and keeps the caller's", () => {
  const item = prepare({ source: "s", data: {} }, 1_700_000_000_250);
  assert.match(item.id, UUID7);
  assert.equal(item.event.occurred_at, "2023-11-14T22:13:20.250Z");
  assert.deepEqual(JSON.parse(item.body), item.event);
  const again = prepare(item.event, Date.now());
  assert.equal(again.body, item.body);
  const named = prepare({ source: "s", id: "mine" }, 0);
  assert.equal(named.id, "mine");
  assert.equal(named.event.occurred_at, undefined);
  assert.equal(prepare({ source: "s", event_id: "alias" }, 0).id, "alias");
  assert.throws(() => prepare({ source: "s", data: { n: 1n } }, 0));
  assert.deepEqual(JSON.parse(batchBody([item, named])).events.length, 2);
});

test("backoff is full jitter under an exponential ceiling", () => {
  const policy = { ...DEFAULT_POLICY, backoffBaseMs: 500, backoffCapMs: 4000 };
  for (const [attempt, ceiling] of [[1, 500], [2, 1000], [3, 2000], [4, 4000], [10, 4000]] as const) {
    const delays = Array.from({ length: 200 }, () => backoffMs(policy, attempt));
    assert.ok(delays.every((d) => d >= 0 && d <= ceiling));
    assert.ok(Math.max(...delays) > ceiling * 0.8 && Math.min(...delays) < ceiling * 0.2);
  }
  assert.equal(delayMs(policy, 1, 7000), 7000);
  assert.equal(delayMs({ ...policy, maxRetryAfterMs: 30_000 }, 1, 3_600_000), 30_000);
});

test("Retry-After in seconds or as an HTTP date", () => {
  assert.equal(parseRetryAfter("3"), 3000);
  assert.equal(parseRetryAfter("-2"), 0);
  assert.equal(parseRetryAfter(null), null);
  assert.equal(parseRetryAfter("soon"), null);
  const now = Date.now();
  const later = parseRetryAfter(new Date(now + 120_000).toUTCString(), now) ?? 0;
  assert.ok(later > 118_000 && later <= 120_000);
});

test("per-item results are read in order", () => {
  const verdict = judgeBatch(
    answer(207, {
      results: [
        { status: "accepted", id: "a" },
        { status: "duplicate", id: "b" },
        { status: "rejected", error: { status: 422, detail: "source is required" } },
        { status: "rejected", error: { status: 503, title: "busy" } },
      ],
    }),
    4,
  );
  assert.deepEqual(verdict.fates, ["sent", "sent", "rejected", "retry"]);
  assert.equal(verdict.reasons[2], "422 source is required");
});

test("whole-batch answers", () => {
  const busy = judgeBatch(answer(429, { title: "busy" }, { "retry-after": "2" }), 2);
  assert.deepEqual(busy.fates, ["retry", "retry"]);
  assert.equal(busy.retryAfterMs, 2000);
  assert.deepEqual(judgeBatch(answer(500, null), 1).fates, ["retry"]);
  assert.deepEqual(judgeBatch(answer(401, { status: 401, detail: "no key" }), 1).reasons, ["401 no key"]);
  assert.deepEqual(judgeBatch(answer(413, null), 2).fates, ["too_large", "too_large"]);
  assert.deepEqual(judgeBatch(answer(207, { results: [] }), 1).fates, ["retry"]);
});
