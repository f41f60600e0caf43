"""The config file's `enabled` on every backend: it wins when the file changed it, and a
run-time disable (410, the API) survives a restart with an unchanged file."""

from __future__ import annotations

from ingestd.catalog import Catalog
from ingestd.config import DestinationConfig, Settings
from ingestd.destinations.inbox import InboxDestination
from ingestd.ingest.acceptor import Acceptor
from ingestd.routing import Directory
from ingestd.store import Store


def hook(enabled: bool = True, url: str = "https://example.com/a") -> DestinationConfig:
    return DestinationConfig(name="a", kind="webhook", url=url, enabled=enabled)


async def start(store: Store, *configs: DestinationConfig) -> None:
    """What `ingestd serve` does with the file at start."""
    directory = Directory(InboxDestination)
    settings = Settings(destinations=list(configs), webhook_allow_nets=["127.0.0.0/8"])
    catalog = Catalog(store, directory, settings, Acceptor(store, directory))
    await catalog.seed()


async def state(store: Store) -> tuple[bool, str | None]:
    row = await store.get_destination("default", "a")
    assert row is not None
    assert "enabled" not in row.config  # a column of its own, never in the config text
    assert (row.disabled_at is None) == row.enabled
    return row.enabled, row.disabled_reason


async def test_the_file_wins_only_when_it_changed(store: Store) -> None:
    await start(store, hook())
    assert await state(store) == (True, None)

    # A receiver answered 410: a restart with the same file leaves it disabled.
    assert await store.disable_destination("default", "a", "HTTP 410 Gone", 1.0)
    await start(store, hook())
    assert await state(store) == (False, "HTTP 410 Gone")

    # The file entry changed (a new URL): the file's `enabled = true` applies.
    await start(store, hook(url="https://example.com/b"))
    assert await state(store) == (True, None)

    # The file says disabled: applied once; an operator's re-enable then survives restarts.
    await start(store, hook(enabled=False, url="https://example.com/b"))
    assert await state(store) == (False, "disabled in the config file")
    row = await store.get_destination("default", "a")
    assert row is not None
    assert await store.update_destination("default", "a", row.config, 2.0, enabled=True)
    await start(store, hook(enabled=False, url="https://example.com/b"))
    assert await state(store) == (True, None)

    # Flipping only `enabled` in the file is a change too.
    await start(store, hook(url="https://example.com/b"))
    assert await state(store) == (True, None)
    await start(store, hook(enabled=False, url="https://example.com/b"))
    assert await state(store) == (False, "disabled in the config file")
    await start(store, hook(enabled=True, url="https://example.com/b"))
    assert await state(store) == (True, None)


async def test_sync_reports_what_the_file_changed(store: Store) -> None:
    a = {"name": "a", "kind": "webhook", "url": "https://example.com/a"}
    b = {"name": "b", "kind": "webhook", "url": "https://example.com/b"}
    assert await store.sync_destinations("default", [a, b], 1.0) == ["a", "b"]
    assert await store.sync_destinations("default", [a, b], 2.0) == []
    assert await store.sync_destinations("default", [a, {**b, "url": "x"}], 3.0) == ["b"]
    assert await store.sync_destinations("default", [a], 4.0) == []  # b deleted
    assert [d.name for d in await store.list_destinations()] == ["a"]
