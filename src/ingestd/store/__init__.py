"""Backends chosen by URL and imported lazily: `sqlite:///path.db`, `postgresql://...`."""

from __future__ import annotations

import importlib
from typing import Any

from ingestd.errors import ConfigError, MissingExtra
from ingestd.store.protocol import Store

BACKENDS = {
    "sqlite": ("ingestd.store.sqlite", "SQLiteStore", None),
    "postgresql": ("ingestd.store.postgres", "PostgresStore", "postgres"),
    "postgres": ("ingestd.store.postgres", "PostgresStore", "postgres"),
}


def store_from_url(url: str, **options: Any) -> Store:
    """Build (not open) the Store for a database URL."""
    scheme = url.split("://", 1)[0].split("+", 1)[0]
    if scheme not in BACKENDS:
        raise ConfigError(
            f"INGESTD_DATABASE_URL scheme {scheme!r} is not supported; use one of "
            + ", ".join(f"{s}://" for s in BACKENDS)
        )
    module_name, class_name, extra = BACKENDS[scheme]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if extra is None:
            raise
        raise MissingExtra(extra, exc.name or module_name) from exc
    store: Store = getattr(module, class_name).from_url(url, **options)
    return store


__all__ = ["Store", "store_from_url"]
