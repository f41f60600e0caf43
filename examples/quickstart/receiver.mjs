// A webhook receiver that verifies Standard Webhooks signatures with the official
// `standardwebhooks` npm package. Usage: npm ci && node receiver.mjs [PORT] (default 9000).
import { createServer } from "node:http";
import { Webhook } from "standardwebhooks";

// The destination's `secrets` in ingestd.toml. The package takes the base64 part.
const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const webhook = new Webhook(SECRET.replace(/^whsec_/, ""));
const seen = new Set(); // webhook-id: the same delivery may arrive twice (at-least-once)
const port = Number(process.argv[2] ?? 9000);

createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    let event;
    try {
      // Checks the HMAC over id, timestamp and body, and that it is < 5 minutes old.
      event = webhook.verify(body, req.headers);
    } catch (err) {
      console.log(`REJECTED: ${err.message}`);
      res.writeHead(401).end();
      return;
    }
    const delivery = req.headers["webhook-id"];
    if (!seen.has(delivery)) {
      seen.add(delivery);
      console.log(`verified ${delivery}: ${JSON.stringify(event)}`);
    }
    res.writeHead(204).end(); // any 2xx is success; anything else is retried
  });
}).listen(port, "127.0.0.1", () => console.log(`receiver listening on http://127.0.0.1:${port}`));
