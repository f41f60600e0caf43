"""Pull events from an ingestd inbox, handle them, acknowledge them. Standard library only.
Usage: python inbox_consumer.py INBOX [BASE_URL] (default http://127.0.0.1:8000)."""

from __future__ import annotations

import json
import sys
import urllib.request


def call(url: str, body: dict[str, object] | None = None) -> dict[str, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, {"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, object] = json.load(response)
        return answer


def main(inbox: str, base: str) -> None:
    # Leases up to 10 events for 30 s, waiting up to 5 s for the first one to arrive.
    page = call(f"{base}/inbox/{inbox}?limit=10&wait=5&visibility=30")
    events = page["events"]
    assert isinstance(events, list)
    for item in events:
        event = item["event"]
        print(f"pulled {item['id']} (attempt {item['attempt']}): {event['type']} {event['id']}")
    # Not acknowledged within the lease, an event is handed out again (attempt + 1).
    acked = call(f"{base}/inbox/{inbox}/ack", {"ids": [item["id"] for item in events]})
    print(f"acked {acked['acked']}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:8000")
