// CloudEvents 1.0 sent with the official JavaScript SDK (`cloudevents` on npm) to a real
// `ingestd serve`: structured, binary and batched modes, the envelope they become, the
// `source:id` idempotency key, and the 422s for a missing attribute or another specversion.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { CloudEvent, emitterFor, HTTP, httpTransport, type Message, Mode, V03 } from "cloudevents";

import { IngestdServer } from "./server.js";

const server = new IngestdServer();
const TIME = "2026-03-01T09:30:15.123Z";
const DATA = { total: 42, currency: "EUR" };

before(async () => server.start());
after(async () => server.stop());

function orderPaid(source: string, id: string): CloudEvent<typeof DATA> {
  return new CloudEvent({ id, source, type: "com.example.order.paid", time: TIME, subject: "orders/42", data: DATA });
}

async function post(message: Message, path = "/ingest"): Promise<Response> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(message.headers)) headers[name] = String(value);
  return fetch(`${server.url}${path}`, { method: "POST", headers, body: message.body as string });
}

async function assertProblem(res: Response, status: number, field: string): Promise<Record<string, any>> {
  const text = await res.text();
  assert.equal(res.status, status, text);
  assert.match(res.headers.get("content-type") ?? "", /^application\/problem\+json/);
  const problem = JSON.parse(text) as Record<string, any>;
  assert.equal(problem["status"], status);
  assert.ok(problem["detail"]);
  assert.equal(problem["field"], field);
  return problem;
}

async function assertStored(source: string, id: string): Promise<void> {
  const [stored, ...rest] = await server.stored(source);
  assert.deepEqual(rest, []);
  assert.equal(stored?.["id"], id);
  assert.equal(stored?.["source"], source);
  assert.equal(stored?.["type"], "com.example.order.paid");
  assert.equal(stored?.["occurred_at"], "2026-03-01T09:30:15.123000Z");
  assert.equal(stored?.["subject"], "orders/42");
  assert.deepEqual(stored?.["data"], DATA);
}

for (const [name, serialize] of [["structured", HTTP.structured], ["binary", HTTP.binary]] as const) {
  test(`${name} mode maps onto the envelope; a resend is a duplicate`, async () => {
    const source = `/ts-ce/${name}`;
    const id = `ts-ce-${name}-1`;
    const message = serialize(orderPaid(source, id));
    const first = await post(message);
    const accepted = (await first.json()) as Record<string, any>;
    assert.equal(first.status, 202, JSON.stringify(accepted));
    assert.equal(accepted["id"], id);
    assert.equal(accepted["event_id"], id);
    assert.equal(accepted["idempotency_key"], `${source}:${id}`);
    await assertStored(source, id);

    const again = await post(message, "/api/events");
    const duplicate = (await again.json()) as Record<string, any>;
    assert.equal(again.status, 200, JSON.stringify(duplicate));
    assert.equal(duplicate["status"], "duplicate");
    assert.equal(duplicate["original_id"], id);
    assert.equal((await server.stored(source)).length, 1);
  });
}

for (const mode of [Mode.STRUCTURED, Mode.BINARY]) {
  test(`the SDK's HTTP emitter in ${mode} mode`, async () => {
    const emit = emitterFor(httpTransport(`${server.url}/ingest`), { binding: HTTP, mode });
    const source = `/ts-ce-emitter/${mode}`;
    const reply = (await emit(orderPaid(source, `ts-ce-emitter-${mode}`))) as { body: string };
    assert.equal(JSON.parse(reply.body)["status"], "accepted", reply.body);
    await assertStored(source, `ts-ce-emitter-${mode}`);
  });
}

test("batched mode, built from the SDK's structured JSON, is read per item", async () => {
  const source = "/ts-ce/batch";
  const items = [0, 1, 2].map((i) => JSON.parse(HTTP.structured(orderPaid(source, `ts-ce-batch-${i}`)).body as string));
  const message: Message = {
    headers: { "content-type": "application/cloudevents-batch+json" },
    body: JSON.stringify(items),
  };
  // The SDK itself reads this body as a batch of three events.
  const parsed = HTTP.toEvent(message);
  assert.ok(Array.isArray(parsed) && parsed.length === 3);

  delete items[1]["type"]; // one bad item must not spoil the others
  message.body = JSON.stringify(items);
  const res = await post(message, "/ingest/batch");
  const doc = (await res.json()) as { results: Array<Record<string, any>> };
  assert.equal(res.status, 207, JSON.stringify(doc));
  assert.deepEqual(doc.results.map((r) => r["status"]), ["accepted", "rejected", "accepted"]);
  assert.equal(doc.results[0]?.["idempotency_key"], `${source}:ts-ce-batch-0`);
  assert.equal(doc.results[1]?.["error"]["status"], 422);
  assert.equal(doc.results[1]?.["error"]["field"], "events[1].type");
  const stored = await server.stored(source);
  assert.deepEqual(stored.map((e) => e["id"]).sort(), ["ts-ce-batch-0", "ts-ce-batch-2"]);
  assert.ok(stored.every((e) => e["occurred_at"] === "2026-03-01T09:30:15.123000Z" && e["subject"] === "orders/42"));

  const again = await post(message, "/ingest/batch");
  const redo = (await again.json()) as { results: Array<Record<string, any>> };
  assert.deepEqual(redo.results.map((r) => r["status"]), ["duplicate", "rejected", "duplicate"]);
});

for (const missing of ["id", "source", "type"]) {
  test(`structured mode without ${missing} is a 422 problem`, async () => {
    const doc = JSON.parse(HTTP.structured(orderPaid("/ts-ce/missing", `ts-ce-missing-${missing}`)).body as string);
    delete doc[missing];
    const res = await post({ headers: { "content-type": "application/cloudevents+json" }, body: JSON.stringify(doc) });
    await assertProblem(res, 422, missing);
  });

  test(`binary mode without ce-${missing} is a 422 problem`, async () => {
    const message = HTTP.binary(orderPaid("/ts-ce/missing-bin", `ts-ce-missing-bin-${missing}`));
    delete message.headers[`ce-${missing}`];
    await assertProblem(await post(message), 422, missing);
  });
}

for (const [name, serialize] of [["structured", HTTP.structured], ["binary", HTTP.binary]] as const) {
  test(`${name} mode with specversion 0.3 is a 422 problem`, async () => {
    const old = new CloudEvent({ specversion: V03, id: `ts-ce-v03-${name}`, source: "/ts-ce/v03", type: "legacy", data: { a: 1 } });
    const problem = await assertProblem(await post(serialize(old)), 422, "specversion");
    assert.match(String(problem["detail"]), /0\.3/);
    assert.deepEqual(await server.stored("/ts-ce/v03"), []);
  });
}
