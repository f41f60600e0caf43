"""`ingestd dlq list|show|replay|purge`: the dead-letter queue from the shell, through the
admin service (the same operations as GET/POST/DELETE /dlq)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from ingestd.admin import Admin, dead_letter_filter, selection
from ingestd.cli.common import with_store
from ingestd.config import Settings
from ingestd.errors import DeadLetterNotFound, InvalidSelection
from ingestd.model import DEFAULT_TENANT
from ingestd.store.protocol import DeadLetter, DeadLetterQuery, Store

Command = Callable[[argparse.Namespace, Settings], int]


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
        p.add_argument("--destination", help="only this destination's")
        p.add_argument("--type", dest="event_type", help="only events of this type")
        p.add_argument("--since", help="died at >= (RFC 3339)")
        p.add_argument("--until", help="died at < (RFC 3339)")
        if name == "list":
            p.add_argument("--limit", type=int, default=100, help="at most this many")
            p.add_argument("--json", action="store_true", help="one JSON object per line")
    show = actions.add_parser("show", help="one dead delivery with its event")
    show.add_argument("id", help="a dead-letter id (msg_...)")
    commands["dlq"] = run


def query_of(args: argparse.Namespace) -> DeadLetterQuery:
    """`list` filters; for `replay` and `purge`, a selection that must not be empty."""
    filters: dict[str, Any] = {
        "destination": args.destination,
        "event_type": args.event_type,
        "since": args.since,
        "until": args.until,
    }
    if args.dlq_action == "list":
        return dead_letter_filter(DEFAULT_TENANT, **filters, limit=args.limit)
    return selection(DEFAULT_TENANT, ids=args.ids or None, everything=args.all, **filters)


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
    try:
        query = query_of(args) if args.dlq_action != "show" else None
    except InvalidSelection as exc:
        empty = exc.field == "ids"  # said in the CLI's own terms
        print(f"ingestd dlq: {'give ids, a filter or --all' if empty else exc}", file=sys.stderr)
        return 2

    async def act(store: Store) -> int:
        admin = Admin(store, settings)
        if args.dlq_action == "show":
            try:
                item = await admin.dead_letter(DEFAULT_TENANT, args.id)
            except DeadLetterNotFound as exc:
                print(exc, file=sys.stderr)
                return 1
            print(json.dumps({**as_dict(item), "event": _event(item)}, indent=2))
            return 0
        assert query is not None
        if args.dlq_action == "list":
            page = await admin.dead_letters(query)
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
            print(f"replayed {await admin.replay(query)}")
        else:
            print(f"purged {await admin.purge(query)}")
        return 0

    return with_store(settings, act)


def _event(item: DeadLetter) -> dict[str, Any]:
    e = item.event
    return {"id": e.id, "source": e.source, "type": e.type, "data": e.data}
