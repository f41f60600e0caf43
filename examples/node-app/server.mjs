// A Node service that emits events through the TypeScript SDK (@ingestd/client) without
// waiting for ingestd: `emit()` queues the event and returns; a background loop sends
// batches, retries with backoff and honours Retry-After. Usage: node server.mjs [PORT].
import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { Client } from "@ingestd/client";

const events = new Client(process.env.INGESTD_URL ?? "http://127.0.0.1:8000", {
  apiKey: process.env.INGESTD_API_KEY,
  onDrop: (event, reason) => console.error(`event ${event.id} not sent: ${reason}`),
});
const port = Number(process.argv[2] ?? 8080);

const server = createServer((req, res) => {
  if (req.method === "POST" && req.url === "/signups") {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      let body;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch {
        res.writeHead(400).end();
        return;
      }
      const userId = `usr-${randomUUID()}`;
      // ... store the user in the application's own database here ...
      events.emit({
        source: "accounts",
        type: "user.signed_up",
        id: userId, // the idempotency key becomes accounts:<id>: retries never duplicate
        data: { email: body.email, plan: body.plan ?? "free" },
      }); // returns at once; never throws
      res.writeHead(201, { "content-type": "application/json" });
      res.end(JSON.stringify({ id: userId }));
    });
  } else if (req.url === "/health") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ status: "ok", events: events.stats }));
  } else {
    res.writeHead(404).end();
  }
});

// On SIGTERM: stop taking requests, then send what is still queued (up to 5 s).
process.on("SIGTERM", async () => {
  server.close();
  await events.close(5_000);
  process.exit(0);
});

server.listen(port, "127.0.0.1", () => console.log(`signups on http://127.0.0.1:${port}`));
