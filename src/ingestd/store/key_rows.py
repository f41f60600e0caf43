"""API-key rows ↔ StoredKey, shared by both SQL backends (same columns, in this order)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from ingestd.keys import StoredKey

_scopes = msgspec.json.Decoder(tuple[str, ...]).decode


def key_values(key: StoredKey) -> list[Any]:
    """The row's values in column order (scopes as given: the backend encodes them)."""
    return [
        key.id,
        key.prefix,
        key.digest,
        key.tenant_id,
        list(key.scopes),
        key.source,
        key.rate,
        key.burst,
        key.name,
        key.created_at,
        key.expires_at,
        key.revoked_at,
        key.last_used_at,
    ]


COLUMNS = [
    "id",
    "prefix",
    "digest",
    "tenant_id",
    "scopes",
    "source",
    "rate",
    "burst",
    "name",
    "created_at",
    "expires_at",
    "revoked_at",
    "last_used_at",
]


def key_from_row(row: Sequence[Any]) -> StoredKey:
    scopes = row[4]
    if isinstance(scopes, str | bytes):  # SQLite keeps a JSON list
        scopes = _scopes(scopes)
    return StoredKey(
        id=row[0],
        prefix=row[1],
        digest=bytes(row[2]),
        tenant_id=row[3],
        scopes=tuple(scopes),
        source=row[5],
        rate=row[6],
        burst=row[7],
        name=row[8],
        created_at=row[9],
        expires_at=row[10],
        revoked_at=row[11],
        last_used_at=row[12],
    )
