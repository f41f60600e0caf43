"""Paging cursors, the opaque `next_cursor` of GET /events and GET /dlq, for every backend.

A cursor is one or more non-negative integers joined by '.', each below the bound of its
column; anything else is InvalidCursor (a 400), never a database error (a 500).
"""

from __future__ import annotations

from ingestd.errors import InvalidCursor

BIGINT = 2**63
"""Bound of a signed 64-bit column (SQLite integers, PostgreSQL bigint)."""
XID8 = 2**64
"""Bound of a PostgreSQL full transaction id (unsigned 64-bit)."""


def encode_cursor(*parts: int | str) -> str:
    return ".".join(str(part) for part in parts)


def decode_cursor(cursor: str, *bounds: int) -> tuple[int, ...]:
    """The integers of a cursor made by `encode_cursor`, one per bound."""
    parts = cursor.split(".")
    if len(parts) != len(bounds):
        raise InvalidCursor()
    values = []
    for part, bound in zip(parts, bounds, strict=True):
        # isascii(): str.isdigit() also accepts "²" and Arabic-Indic digits (int() reads those).
        if not (0 < len(part) <= len(str(bound)) and part.isascii() and part.isdigit()):
            raise InvalidCursor()
        value = int(part)
        if value >= bound:
            raise InvalidCursor()
        values.append(value)
    return tuple(values)
