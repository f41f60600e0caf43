"""`ingestd keys create|list|revoke`: API keys kept in the store, from the shell.

`create` prints the new key once (on stdout, nothing else there with --quiet): only its
SHA-256 is stored. Every API process accepts a new key, and refuses a revoked one, within
about a second, without a restart.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ingestd.cli.common import with_store
from ingestd.config import Settings
from ingestd.keys import SCOPES, InvalidKeyRequest, StoredKey, expiry, key_view, new_key
from ingestd.store.protocol import Store

Command = Callable[[argparse.Namespace, Settings], int]


def add_commands(sub: Any, commands: dict[str, Command]) -> None:
    keys = sub.add_parser("keys", help="API keys in the store: create, list, revoke")
    actions = keys.add_subparsers(dest="keys_action", required=True)
    create = actions.add_parser("create", help="make a key; prints it once")
    create.add_argument("--tenant", default="default", help="the tenant whose key it is")
    create.add_argument(
        "--scopes", default="ingest", help=f"comma-separated: {', '.join(SCOPES)} (default ingest)"
    )
    create.add_argument("--source", help="pin the key to this source")
    create.add_argument("--expires", help="a duration (90d, 12h, 2w) or an RFC 3339 time")
    create.add_argument("--name", help="what the key is for (shown by keys list)")
    create.add_argument("--rate", type=float, help="events per second for this key")
    create.add_argument("--burst", type=int, help="events allowed at once")
    create.add_argument("--quiet", action="store_true", help="print the key alone")
    listing = actions.add_parser("list", help="every stored key: prefix, tenant, scopes, …")
    listing.add_argument("--tenant", help="only this tenant's keys")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    revoke = actions.add_parser("revoke", help="revoke a key (by its id, key_...)")
    revoke.add_argument("id", help="the key's id, key_... (keys list shows it)")
    commands["keys"] = run


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def row(key: StoredKey, now: float) -> dict[str, Any]:
    return key_view(key, now, when)


def run(args: argparse.Namespace, settings: Settings) -> int:
    made: tuple[str, StoredKey] | None = None
    if args.keys_action == "create":
        try:
            made = new_key(
                tenant_id=args.tenant,
                scopes=[s.strip() for s in args.scopes.split(",") if s.strip()],
                source=args.source,
                name=args.name,
                expires_at=expiry(args.expires),
                rate=args.rate,
                burst=args.burst,
            )
        except InvalidKeyRequest as exc:
            print(f"ingestd keys: {exc}", file=sys.stderr)
            return 2

    async def act(store: Store) -> int:
        now = time.time()
        if made is not None:
            plaintext, key = made
            await store.create_api_key(key)
            if args.quiet:
                print(plaintext)
            else:
                print(f"created {key.id} (tenant {key.tenant_id}, scopes {','.join(key.scopes)})")
                print("the key, shown this once (only its SHA-256 is stored):")
                print(plaintext)
            return 0
        if args.keys_action == "list":
            for key in await store.api_keys(args.tenant):
                r = row(key, now)
                if args.json:
                    print(json.dumps(r))
                else:
                    print(
                        f"{r['id']}  {r['prefix']}…  {r['tenant']:<12} {','.join(r['scopes']):<18}"
                        f" {r['state']:<8} created {r['created_at']}  last used "
                        f"{r['last_used_at']}  expires {r['expires_at']}"
                        + (f"  {r['name']}" if r["name"] else "")
                    )
            return 0
        if await store.revoke_api_key(args.id, now):
            print(f"revoked {args.id}")
            return 0
        known = [k for k in await store.api_keys() if k.id == args.id]
        if known:
            print(f"{args.id} was already revoked", file=sys.stderr)
            return 0
        print(f"no API key {args.id!r}", file=sys.stderr)
        return 1

    return with_store(settings, act)
