"""`ingestd dlq list|show|replay|purge`: the dead-letter queue from the shell, on the store."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ingestd.config import Settings
from ingestd.store.protocol import DeadLetter, DeadLetterQuery, Store

Command = Callable[[argparse.Namespace, Settings], int]
EVERYTHING = 1_000_000_000


def add_commands(sub: Any, commands: dict[str, Command]) -> None:
    dlq = sub.add_parser("dlq", help="dead letters: list, show, replay, purge")
    actions = dlq.add_subparsers(dest="dlq_action", required=True)
    for name, helptext in (
        ("list", "list dead deliveries"),
        ("replay", "deliver again (same webhook-id, attempts reset)"),
        ("purge", "delete dead deliveries"),
    ):
        p = actions.add_parser(name, help=helptext)
        if name != "list":
            p.add_argument("ids", nargs="*", help="dead-letter ids (msg_...)")
            p.add_argument("--all", action="store_true", help="every dead delivery")
        p.add_argument("--destination")
        p.add_argument("--type", dest="event_type")
        p.add_argument("--since", help="died at >= (RFC 3339)")
        p.add_argument("--until", help="died at < (RFC 3339)")
        if name == "list":
            p.add_argument("--limit", type=int, default=100)
            p.add_argument("--json", action="store_true", help="one JSON object per line")
    show = actions.add_parser("show", help="one dead delivery with its event")
    show.add_argument("id")
    commands["dlq"] = run


def timestamp(value: str | None) -> float | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r}: give an offset, e.g. 2026-01-31T12:00:00Z")
    return parsed.timestamp()


def query_of(args: argparse.Namespace) -> DeadLetterQuery:
    ids = getattr(args, "ids", None) or None
    return DeadLetterQuery(
        ids=tuple(ids) if ids else None,
        destination=args.destination,
        event_type=args.event_type,
        since=timestamp(args.since),
        until=timestamp(args.until),
        limit=getattr(args, "limit", EVERYTHING),
    )


def as_dict(item: DeadLetter) -> dict[str, Any]:
    d = item.delivery
    return {
        "id": d.delivery_id,
        "destination": d.destination,
        "event_id": item.event.id,
        "event_type": item.event.type,
        "attempts": d.attempts,
        "last_status_code": d.last_status,
        "last_error": d.last_error,
        "died_at": d.finished_at,
    }


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ingestd.cli import with_store

    try:
        query = query_of(args) if args.dlq_action != "show" else None
    except ValueError as exc:
        print(f"ingestd dlq: {exc}", file=sys.stderr)
        return 2
    if args.dlq_action in ("replay", "purge") and query is not None:
        selective = query.ids or query.destination or query.event_type or query.since
        if not (selective or query.until or args.all):
            print("ingestd dlq: give ids, a filter or --all", file=sys.stderr)
            return 2

    async def act(store: Store) -> int:
        if args.dlq_action == "show":
            page = await store.dead_letters(DeadLetterQuery(ids=(args.id,), limit=1))
            if not page.items:
                print(f"no dead delivery {args.id!r}", file=sys.stderr)
                return 1
            item = page.items[0]
            print(json.dumps({**as_dict(item), "event": _event(item)}, indent=2))
            return 0
        assert query is not None
        if args.dlq_action == "list":
            page = await store.dead_letters(query)
            for item in page.items:
                if args.json:
                    print(json.dumps(as_dict(item)))
                else:
                    row = as_dict(item)
                    print(
                        f"{row['id']}  {row['destination']:<20} {row['event_type'] or '-':<24} "
                        f"attempts={row['attempts']}  {row['last_error'] or ''}"
                    )
            return 0
        if args.dlq_action == "replay":
            print(f"replayed {await store.replay_dead(query, time.time())}")
        else:
            print(f"purged {await store.purge_dead(query)}")
        return 0

    return with_store(settings, act)


def _event(item: DeadLetter) -> dict[str, Any]:
    e = item.event
    return {"id": e.id, "source": e.source, "type": e.type, "data": e.data}
