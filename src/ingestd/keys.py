"""API keys kept in the store: how one is made, what is kept of it, when it is valid.

The plaintext is shown once, when the key is made, and never kept: the store holds its
SHA-256 (as the TOML/environment keys' `key_sha256`), a short prefix to recognise it by,
and what it may do. A key is refused once revoked or past `expires_at`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from ingestd.errors import IngestdError

KEY_PREFIX = "igd_"
"""Every stored key starts with this, so a leaked one is recognisable (secret scanners)."""
SCOPES = ("ingest", "read", "admin")
DURATION = re.compile(r"^(\d+)([smhdw])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class InvalidKeyRequest(IngestdError):
    """The key cannot be made as asked."""


class StoredKey(msgspec.Struct, frozen=True, kw_only=True):
    """An API key as the store keeps it (never its plaintext)."""

    id: str
    prefix: str
    """The plaintext's first characters (`igd_` and 8 more): how `keys list` names it."""
    digest: bytes
    """SHA-256 of the plaintext."""
    tenant_id: str
    scopes: tuple[str, ...]
    source: str | None = None
    rate: float | None = None
    burst: int | None = None
    name: str | None = None
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None

    def valid_at(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "active" if self.valid_at(now) else "expired"


def key_view(key: StoredKey, now: float, when: Callable[[float | None], Any]) -> dict[str, Any]:
    """What is shown of a stored key (never its digest or plaintext), times through `when`."""
    return {
        "id": key.id,
        "prefix": key.prefix,
        "name": key.name,
        "tenant": key.tenant_id,
        "scopes": list(key.scopes),
        "source": key.source,
        "state": key.state(now),
        "created_at": when(key.created_at),
        "expires_at": when(key.expires_at),
        "revoked_at": when(key.revoked_at),
        "last_used_at": when(key.last_used_at),
    }


def new_key(
    *,
    tenant_id: str,
    scopes: list[str] | tuple[str, ...],
    source: str | None = None,
    expires_at: float | None = None,
    name: str | None = None,
    rate: float | None = None,
    burst: int | None = None,
    now: float | None = None,
) -> tuple[str, StoredKey]:
    """(plaintext, what to store). The plaintext is 32 random bytes, URL-safe."""
    now = time.time() if now is None else now
    chosen = tuple(dict.fromkeys(scopes))
    unknown = [s for s in chosen if s not in SCOPES]
    if not chosen or unknown:
        raise InvalidKeyRequest(
            f"scopes: one or more of {', '.join(SCOPES)}"
            + (f" (not {', '.join(map(repr, unknown))})" if unknown else "")
        )
    if not tenant_id or len(tenant_id) > 128:
        raise InvalidKeyRequest("tenant: 1 to 128 characters")
    if expires_at is not None and expires_at <= now:
        raise InvalidKeyRequest("expires: a time in the future")
    if rate is not None and rate < 0:
        raise InvalidKeyRequest("rate: events per second, 0 or more")
    if burst is not None and burst < 1:
        raise InvalidKeyRequest("burst: 1 or more")
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    stored = StoredKey(
        id="key_" + secrets.token_hex(8),
        prefix=plaintext[: len(KEY_PREFIX) + 8],
        digest=hashlib.sha256(plaintext.encode()).digest(),
        tenant_id=tenant_id,
        scopes=chosen,
        source=source or None,
        rate=rate,
        burst=burst,
        name=name or None,
        created_at=now,
        expires_at=expires_at,
    )
    return plaintext, stored


def expiry(value: str | float | None, now: float | None = None) -> float | None:
    """`--expires`: a duration from now (`90d`, `12h`, `30m`, `2w`), an RFC 3339 time, or
    Unix seconds; None for a key that does not expire."""
    if value is None or value == "":
        return None
    now = time.time() if now is None else now
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    match = DURATION.match(text)
    if match:
        return now + int(match[1]) * UNIT_SECONDS[match[2]]
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise InvalidKeyRequest(
            f"expires: a duration (90d, 12h, 30m, 2w) or an RFC 3339 time with an offset, "
            f"not {text!r}"
        )
    return parsed.timestamp()
