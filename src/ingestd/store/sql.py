"""SQL lives in .sql files: named blocks (`-- name: claim`) and numbered migrations."""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
_REF = re.compile(r"\{(\w+)\}")


def queries(dialect: str) -> dict[str, str]:
    """The named blocks of `store/<dialect>/queries.sql`, references to blocks filled in."""
    text = resources.files(f"ingestd.store.{dialect}").joinpath("queries.sql").read_text()
    parts = _NAME.split(text)
    blocks = {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}
    # `{name}` stands for another block (a selection several statements share); any other
    # `{...}` is left for the caller to fill in.
    return {
        name: _REF.sub(lambda m: blocks.get(m.group(1), m.group(0)), sql)
        for name, sql in blocks.items()
    }


def migrations(dialect: str) -> list[tuple[int, str, str]]:
    """(version, name, sql) for each `store/<dialect>/migrations/NNNN_name.sql`, in order."""
    folder = resources.files(f"ingestd.store.{dialect}").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = re.match(r"^(\d{4})_(\w+)\.sql$", entry.name)
        if match:
            found.append((int(match.group(1)), match.group(2), entry.read_text()))
    return sorted(found)
