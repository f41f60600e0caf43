"""A webhook receiver that verifies Standard Webhooks signatures (the `standardwebhooks`
package) and prints each event. Usage: python receiver.py [PORT] (default 9000)."""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the destination's `secrets` in ingestd.toml
webhook = Webhook(SECRET)
seen: set[str] = set()  # webhook-id: the same delivery may arrive twice (at-least-once)


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        try:
            # Checks the HMAC over id, timestamp and body, and that it is < 5 minutes old.
            event = webhook.verify(body, dict(self.headers.items()))
        except WebhookVerificationError as exc:
            print(f"REJECTED: {exc}", flush=True)
            self.send_response(401)
            self.end_headers()
            return
        delivery = self.headers["webhook-id"]
        if delivery not in seen:
            seen.add(delivery)
            print(f"verified {delivery}: {json.dumps(event)}", flush=True)
        self.send_response(204)  # any 2xx is success; anything else is retried
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # quiet access log
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    print(f"receiver listening on http://127.0.0.1:{port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Receiver).serve_forever()
