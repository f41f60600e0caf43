// The API key: `Authorization: Bearer <apiKey>` is sent, and a 401 is a permanent failure
// that reaches onDrop with its reason. The server is a real node:http server on loopback
// answering 401 problem+json (ingestd's own API keys are built elsewhere).
import assert from "node:assert/strict";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { type AddressInfo } from "node:net";
import { after, before, test } from "node:test";

import { Client, EventRejected, type IngestEvent } from "../src/index.js";
import { IngestdServer } from "./server.js";

const DENIED = { type: "https://ingestd.dev/problems/unauthorized", title: "Unauthorized", status: 401, detail: "the API key is not valid" };
let server: Server;
let url = "";
const seen: IncomingHttpHeaders[] = [];

before(async () => {
  server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      seen.push(req.headers);
      res.writeHead(401, { "content-type": "application/problem+json", "www-authenticate": "Bearer" });
      res.end(JSON.stringify(DENIED));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
after(() => server.close());

test("a 401 is permanent: sent once with the bearer key, every event reaches onDrop", async () => {
  seen.length = 0;
  const drops: Array<[IngestEvent, string]> = [];
  const client = new Client(url, {
    apiKey: "sk_test_123",
    onDrop: (e, r) => drops.push([e, r]),
    retry: { backoffBaseMs: 1, backoffCapMs: 1 },
  });
  for (const i of [0, 1, 2]) client.emit({ source: "auth", data: { i } });
  assert.equal(await client.flush(10_000), true);
  await client.close();
  assert.equal(seen.length, 1); // not retried
  assert.equal(seen[0]?.["authorization"], "Bearer sk_test_123");
  assert.deepEqual(drops.map(([e]) => e.data?.["i"]), [0, 1, 2]);
  for (const [, reason] of drops) {
    assert.match(reason, /^rejected: 401/);
    assert.match(reason, /API key is not valid/);
  }
  assert.equal(client.stats.dropped, 3);
  assert.equal(client.stats.retried, 0);
  assert.equal(client.stats.sent, 0);
});

test("send() rejects with EventRejected(401)", async () => {
  seen.length = 0;
  const client = new Client(url, { apiKey: "sk_test_123" });
  await assert.rejects(client.send({ source: "auth", data: {} }), (err: unknown) => {
    assert.ok(err instanceof EventRejected);
    assert.equal(err.status, 401);
    assert.equal(err.problem["detail"], "the API key is not valid");
    return true;
  });
  await client.close();
  assert.equal(seen[0]?.["authorization"], "Bearer sk_test_123");
});

test("without an apiKey no authorization header is sent", async () => {
  seen.length = 0;
  const client = new Client(url, { onDrop: () => undefined });
  client.emit({ source: "auth", data: {} });
  assert.equal(await client.flush(10_000), true);
  await client.close();
  assert.equal(seen.length, 1);
  assert.equal(seen[0]?.["authorization"], undefined);
});

test("a real ingestd holding API keys accepts the SDK's key and refuses a wrong one", async () => {
  const key = "sk_real_0123456789ab"; // the server wants at least 16 characters
  const real = new IngestdServer({ INGESTD_API_KEYS: key });
  await real.start();
  try {
    const good = new Client(real.url, { apiKey: key, onDrop: () => assert.fail("dropped") });
    for (const i of [0, 1, 2]) good.emit({ source: "ts-keyed", data: { i } });
    assert.equal(await good.flush(10_000), true);
    await good.close();
    const drops: Array<[IngestEvent, string]> = [];
    const bad = new Client(real.url, { apiKey: "sk_wrong_0123456789ab", onDrop: (e, r) => drops.push([e, r]) });
    bad.emit({ source: "ts-keyed", data: { i: 99 } });
    assert.equal(await bad.flush(10_000), true);
    await bad.close();
    assert.equal(drops.length, 1);
    assert.match(drops[0]?.[1] ?? "", /^rejected: 401/);
    const res = await fetch(`${real.url}/events?source=ts-keyed`, { headers: { authorization: `Bearer ${key}` } });
    const page = (await res.json()) as { events: Array<{ data: { i: number } }> };
    assert.deepEqual(page.events.map((e) => e.data.i).sort(), [0, 1, 2]);
  } finally {
    await real.stop();
  }
});
