// Retry-After on 429/503. The server is a loopback fake of ingestd's documented overload
// answer (ingestd itself cannot be made to answer 429 on demand): the first request gets
// the status with Retry-After, every later one a 207 accepting all events.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { type AddressInfo } from "node:net";
import { test } from "node:test";

import { Client } from "../src/index.js";

const UUID7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

async function overloaded(status: number, retryAfter: number): Promise<{ url: string; seen: Array<[number, string]>; server: Server }> {
  const seen: Array<[number, string]> = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString();
      seen.push([performance.now(), body]);
      if (seen.length === 1) {
        res.writeHead(status, { "content-type": "application/problem+json", "retry-after": String(retryAfter) });
        res.end(JSON.stringify({ type: "about:blank", title: "busy", status }));
        return;
      }
      const events = (JSON.parse(body) as { events: Array<{ id: string }> }).events;
      res.writeHead(207, { "content-type": "application/json" });
      res.end(JSON.stringify({ results: events.map((e) => ({ status: "accepted", id: e.id })) }));
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, seen, server };
}

for (const status of [429, 503]) {
  test(`Retry-After on ${status} is honoured`, async () => {
    const fake = await overloaded(status, 2);
    const client = new Client(fake.url, { retry: { backoffBaseMs: 1, backoffCapMs: 1 } });
    for (const i of [0, 1, 2]) client.emit({ source: "busy", data: { i } });
    assert.equal(await client.flush(10_000), true);
    await client.close();
    fake.server.close();
    assert.equal(fake.seen.length, 2);
    const [[first, body1], [second, body2]] = fake.seen as [[number, string], [number, string]];
    assert.ok(second - first >= 2000, `retried after ${second - first} ms`); // not the 1 ms backoff
    assert.equal(body2, body1); // same ids: the retry is idempotent
    const ids = (JSON.parse(body1) as { events: Array<{ id: string }> }).events.map((e) => e.id);
    assert.equal(ids.length, 3);
    assert.ok(ids.every((id) => UUID7.test(id)));
    assert.equal(client.stats.retried, 3);
    assert.equal(client.stats.sent, 3);
  });
}
