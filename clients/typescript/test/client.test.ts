// The Node SDK against a real `ingestd serve` started by the test.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { Client, EventRejected, type IngestEvent } from "../src/index.js";
import { freePort, IngestdServer, numbers, range } from "./server.js";

const UUID7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const PATIENT = { maxAttempts: 200, backoffBaseMs: 50, backoffCapMs: 500 };
const server = new IngestdServer();

before(async () => server.start());
after(async () => server.stop());

function recorder(): { drops: Array<[IngestEvent, string]>; onDrop: (e: IngestEvent, r: string) => void } {
  const drops: Array<[IngestEvent, string]> = [];
  return { drops, onDrop: (e, r) => drops.push([e, r]) };
}

async function until(predicate: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("batches by size, then by age or flush, with client-assigned ids", async () => {
  const { drops, onDrop } = recorder();
  const client = new Client(server.url, { batchSize: 100, lingerMs: 60_000, onDrop });
  for (const i of range(250)) client.emit({ source: "ts-batch", type: "t", data: { i } });
  client.emit({ source: "ts-batch", id: "my-own-id", data: { i: 250 } });
  // Two full batches leave at once; the other 51 wait for their age (a minute) or flush().
  await until(async () => (await server.stored("ts-batch")).length >= 200);
  assert.equal(client.stats.queued, 51);
  assert.equal((await server.stored("ts-batch")).length, 200);
  assert.equal(await client.flush(10_000), true);
  await client.close();
  const events = await server.stored("ts-batch");
  assert.deepEqual(numbers(events), range(251));
  const named = events.find((e) => e["data"]["i"] === 250);
  assert.equal(named?.["id"], "my-own-id");
  assert.ok(events.filter((e) => e !== named).every((e) => UUID7.test(e["id"])));
  assert.equal(client.stats.sent, 251);
  assert.deepEqual(drops, []);
});

test("a rejected event reaches onDrop and is not retried", async () => {
  const { drops, onDrop } = recorder();
  const client = new Client(server.url, { onDrop });
  client.emit({ source: "ts-reject", data: { i: 0 } });
  client.emit({ source: "ts-reject", occurred_at: "yesterday", data: { i: 1 } });
  client.emit({ source: "ts-reject", data: { i: 2 } });
  assert.equal(await client.flush(10_000), true);
  await client.close();
  assert.deepEqual(numbers(await server.stored("ts-reject")), [0, 2]);
  assert.equal(drops.length, 1);
  const [event, reason] = drops[0] ?? [{}, ""];
  assert.deepEqual(event.data, { i: 1 });
  assert.match(reason, /^rejected: 422 .*occurred_at/);
  assert.equal(client.stats.retried, 0);
});

test("a full queue hands events to onDrop with the reason", async () => {
  const { drops, onDrop } = recorder();
  // batchSize above maxQueue and a long linger: nothing leaves the queue meanwhile.
  const client = new Client(server.url, { maxQueue: 5, batchSize: 10, lingerMs: 60_000, onDrop });
  for (const i of range(8)) client.emit({ source: "ts-full", data: { i } });
  assert.deepEqual(
    drops.map(([e, r]) => [e.data?.["i"], r]),
    [[5, "queue_full"], [6, "queue_full"], [7, "queue_full"]],
  );
  assert.ok(drops.every(([e]) => typeof e.id === "string"));
  await client.close();
  assert.deepEqual(numbers(await server.stored("ts-full")), range(5));
  assert.equal(client.stats.dropped, 3);
});

test("close() sends what is queued; what it cannot send reaches onDrop", async () => {
  const client = new Client(server.url, { lingerMs: 60_000 });
  for (const i of range(10)) client.emit({ source: "ts-close", data: { i } });
  await client.close();
  assert.deepEqual(numbers(await server.stored("ts-close")), range(10));

  const { drops, onDrop } = recorder();
  const down = new Client(`http://127.0.0.1:${await freePort()}`, { onDrop, retry: PATIENT });
  for (const i of range(3)) down.emit({ source: "ts-close", data: { i } });
  assert.equal(await down.flush(300), false);
  await down.close(200);
  assert.deepEqual(drops.map(([, r]) => r.split(":")[0]), ["closed", "closed", "closed"]);
  assert.match(drops[0]?.[1] ?? "", /fetch failed|ECONNREFUSED/);
  down.emit({ source: "ts-close", data: {} }); // after close: reported, not thrown
  assert.equal(down.stats.dropped, 4);
});

test("kill -9 mid-stream and a restart: every event stored exactly once", async () => {
  const { drops, onDrop } = recorder();
  const client = new Client(server.url, { batchSize: 20, lingerMs: 10, retry: PATIENT, onDrop });
  const total = 1500;
  const producing = (async () => {
    for (const i of range(total)) {
      client.emit({ source: "ts-kill9", type: "t", data: { i } });
      if (i % 10 === 9) await new Promise((r) => setTimeout(r, 10));
    }
  })();
  await new Promise((r) => setTimeout(r, 400));
  await server.kill();
  await new Promise((r) => setTimeout(r, 500));
  await server.start();
  await producing;
  assert.equal(await client.flush(60_000), true);
  await client.close();
  assert.deepEqual(numbers(await server.stored("ts-kill9")), range(total));
  assert.deepEqual(drops, []);
  assert.ok(client.stats.retried > 0);
});

test("send() returns the server's result", async () => {
  const client = new Client(server.url);
  const first = await client.send({ source: "ts-send", id: "x1", data: {} });
  const again = await client.send({ source: "ts-send", id: "x1", data: {} });
  assert.equal(first.status, "accepted");
  assert.equal(first.id, "x1");
  assert.ok(first.statusUrl);
  assert.equal(again.status, "duplicate");
  assert.equal(again.id, "x1");
  await assert.rejects(client.send({ data: {} }), (err: unknown) => {
    assert.ok(err instanceof EventRejected);
    assert.equal(err.status, 422);
    return true;
  });
  await client.close();
});

test("a process that ends without close() still sends its events", async () => {
  const entry = fileURLToPath(new URL("../src/index.js", import.meta.url));
  const script = `
    import { Client } from ${JSON.stringify(entry)};
    const client = new Client(${JSON.stringify(server.url)}, { lingerMs: 60000 });
    for (let i = 0; i < 25; i++) client.emit({ source: "ts-exit", data: { i } });
  `;
  await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script], { timeout: 30_000 });
  assert.deepEqual(numbers(await server.stored("ts-exit")), range(25));
});
