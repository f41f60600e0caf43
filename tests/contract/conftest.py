"""The backend-parametrized Store fixture: every contract test runs on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ingestd.store import Store, store_from_url

TTL = 3600.0
"""Keep in step with test_store.TTL."""

StoreFactory = Callable[..., Awaitable[Store]]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest) -> str:
    """A fresh database (file or PostgreSQL database) for one test."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
async def open_store(store_url: str) -> AsyncIterator[StoreFactory]:
    """Open more Store instances on the same database (separate connections)."""
    opened: list[Store] = []

    async def factory(**options: Any) -> Store:
        store = store_from_url(store_url, **{"idempotency_ttl": TTL, **options})
        await store.open()
        opened.append(store)
        return store

    yield factory
    for store in reversed(opened):
        await store.close()


@pytest.fixture
async def store(open_store: StoreFactory) -> Store:
    return await open_store()
