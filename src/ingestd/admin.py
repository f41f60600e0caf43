"""Administration: destinations and dead letters, the one service the HTTP routes, the
console and the CLI go through.

Each operation validates, writes the store, and makes the change visible here at once
(the catalog reloads; other processes follow within about a second). Failures are
`IngestdError`s saying what is wrong (DestinationNotFound, DestinationExists,
InvalidDestination, InvalidSelection); how to answer them is the caller's business.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

import msgspec
from pydantic import ValidationError

from ingestd.catalog import stored_config
from ingestd.config import DestinationConfig, Settings
from ingestd.destinations import build_destination
from ingestd.errors import (
    DeadLetterNotFound,
    DestinationExists,
    DestinationNotFound,
    IngestdError,
    InvalidDestination,
    InvalidSelection,
)
from ingestd.model import DEFAULT_TENANT, DeliveryState
from ingestd.store.protocol import (
    AdminStore,
    DeadLetter,
    DeadLetterPage,
    DeadLetterQuery,
    DestinationRow,
)

EVERYTHING = 1_000_000_000
"""The `limit` of a replay or purge selection: every match."""
MAX_IDS = 1000
"""Ids (or event ids) one request names at most; a filter selects any number."""
LATEST = 253402300800.0
"""9999-12-31T24:00:00Z in Unix seconds: a time filter past it cannot be meant."""
TIME_FORMAT = "an RFC 3339 time with an offset, e.g. 2026-01-31T12:00:00Z"


def instant(value: Any, field: str) -> float | None:
    """Unix seconds from an RFC 3339 string with an offset (or a number); None if empty."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 <= value < LATEST:  # NaN fails both, 10**400 or inf the second
            raise InvalidSelection(f"{field}: Unix seconds between 0 and {LATEST:.0f}", field=field)
        return float(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                try:
                    return parsed.timestamp()
                except (OverflowError, OSError, ValueError):
                    pass
    raise InvalidSelection(f"{field}: {TIME_FORMAT}", field=field)


def id_list(value: Any, field: str, what: str) -> list[str] | None:
    """A request's list of ids: non-empty strings, at most MAX_IDS, duplicates dropped."""
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(i, str) and i for i in value):
        raise InvalidSelection(f"{field}: a non-empty list of {what}", field=field)
    if len(value) > MAX_IDS:
        raise InvalidSelection(
            f"{field}: at most {MAX_IDS} per request (got {len(value)})", field=field
        )
    return list(dict.fromkeys(value))


def dead_letter_filter(
    tenant_id: str = DEFAULT_TENANT,
    *,
    ids: Sequence[str] | None = None,
    destination: str | None = None,
    event_type: str | None = None,
    since: Any = None,
    until: Any = None,
    after: int = 0,
    limit: int = 100,
) -> DeadLetterQuery:
    """A dead-letter query from its filters (times as RFC 3339 or Unix seconds)."""
    return DeadLetterQuery(
        tenant_id=tenant_id,
        ids=tuple(ids) if ids is not None else None,
        destination=destination,
        event_type=event_type,
        since=instant(since, "since"),
        until=instant(until, "until"),
        after=after,
        limit=limit,
    )


def selection(
    tenant_id: str = DEFAULT_TENANT,
    *,
    ids: Sequence[str] | None = None,
    destination: str | None = None,
    event_type: str | None = None,
    since: Any = None,
    until: Any = None,
    everything: bool = False,
) -> DeadLetterQuery:
    """What a replay or purge acts on: ids, or filters, or (explicitly) everything; an
    empty selection is refused rather than read as 'all'."""
    if ids is None and not (destination or event_type or since or until or everything):
        raise InvalidSelection(field="ids")
    return dead_letter_filter(
        tenant_id,
        ids=ids,
        destination=destination,
        event_type=event_type,
        since=since,
        until=until,
        limit=EVERYTHING,
    )


class Admin:
    """Destination and dead-letter operations over the store.

    `reload` makes a destination change take effect in this process at once (the
    catalog's refresh); a CLI that only touches dead letters has none.
    """

    def __init__(
        self,
        store: AdminStore,
        settings: Settings,
        reload: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self._reload = reload
        self.tenant = DEFAULT_TENANT
        """Destinations are shared by every tenant: the operator's tenant owns them."""

    # -- destinations --------------------------------------------------------------------

    async def destinations(self) -> list[DestinationRow]:
        return await self.store.list_destinations(self.tenant)

    async def destination(self, name: str) -> DestinationRow:
        row = await self.store.get_destination(self.tenant, name)
        if row is None:
            raise DestinationNotFound(f"no destination named {name!r}")
        return row

    async def validated(self, doc: dict[str, Any]) -> DestinationConfig:
        """The config, if an adapter can be built from it here."""
        try:
            config = DestinationConfig(**doc)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first.get("loc", ()))
            raise InvalidDestination(
                f"{field}: {first.get('msg', 'invalid')}", field=field
            ) from None
        try:
            adapter = build_destination(config, self.settings)
        except (IngestdError, ValueError, TypeError) as exc:
            raise InvalidDestination(str(exc)) from None
        await adapter.close()
        return config

    async def create_destination(self, doc: dict[str, Any]) -> DestinationRow:
        config = await self.validated(doc)
        now = time.time()
        if not await self.store.create_destination(
            self.tenant, config.name, stored_config(config), now
        ):
            raise DestinationExists(f"a destination named {config.name!r} exists; PATCH it")
        if not config.enabled:
            await self.store.disable_destination(self.tenant, config.name, "created disabled", now)
        await self._changed()
        return await self.destination(config.name)

    async def patch_destination(self, name: str, patch: dict[str, Any]) -> DestinationRow:
        """A JSON merge patch (RFC 7396) of the stored config; `enabled: true` re-enables."""
        row = await self.destination(name)
        if patch.get("name", name) != name:
            raise InvalidDestination("a destination cannot be renamed")
        merged = dict(row.config)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        enabled = merged.pop("enabled", None)
        if enabled is not None and not isinstance(enabled, bool):
            raise InvalidDestination("enabled: must be true or false")
        config = await self.validated({**merged, "name": name})
        if not await self.store.update_destination(
            self.tenant, name, stored_config(config), time.time(), enabled=enabled
        ):
            raise DestinationNotFound(f"no destination named {name!r}")
        await self._changed()
        return await self.destination(name)

    async def delete_destination(self, name: str) -> None:
        """Its unfinished deliveries become dead letters."""
        if not await self.store.delete_destination(self.tenant, name, time.time()):
            raise DestinationNotFound(f"no destination named {name!r}")
        await self._changed()

    async def _changed(self) -> None:
        if self._reload is not None:
            await self._reload()

    # -- dead letters --------------------------------------------------------------------

    async def dead_letters(self, query: DeadLetterQuery) -> DeadLetterPage:
        return await self.store.dead_letters(query)

    async def dead_letter(self, tenant_id: str, delivery_id: str) -> DeadLetter:
        page = await self.store.dead_letters(
            DeadLetterQuery(tenant_id=tenant_id, ids=(delivery_id,), limit=1)
        )
        if not page.items:
            raise DeadLetterNotFound(f"no dead delivery {delivery_id!r}")
        return page.items[0]

    async def replay(self, query: DeadLetterQuery, *, field: str = "ids") -> int:
        """Matching dead deliveries run again: same delivery id, attempts reset. Named ids
        must all be dead letters: a typo (or an event id given as an id) is an error naming
        it, and nothing is replayed, rather than `0 replayed`."""
        if query.ids is not None:
            found = await self.store.dead_letters(
                msgspec.structs.replace(query, limit=len(query.ids))
            )
            known = {item.delivery.delivery_id for item in found.items}
            unknown = [i for i in query.ids if i not in known]
            if unknown:
                hint = ""
                if field == "ids" and not all(i.startswith("msg_") for i in unknown):
                    hint = " (ids are dead-letter ids, msg_...; to replay by event, use event_ids)"
                raise _unmatched(field, unknown, "dead deliveries", hint)
        return await self.store.replay_dead(query, time.time())

    async def dead_letters_of_events(self, tenant_id: str, event_ids: Sequence[str]) -> list[str]:
        """The delivery ids of every dead delivery of these events (the tenant's only); an
        event without one is an error naming it."""
        found: dict[str, list[str]] = {}
        for event_id in event_ids:
            report = await self.store.status(tenant_id, event_id)
            if report is not None:
                found[event_id] = [
                    d.delivery_id for d in report.deliveries if d.state is DeliveryState.DEAD
                ]
        unknown = [e for e in event_ids if not found.get(e)]
        if unknown:
            raise _unmatched("event_ids", unknown, "events with a dead delivery")
        return [i for e in event_ids for i in found[e]]

    async def purge(self, query: DeadLetterQuery) -> int:
        return await self.store.purge_dead(query)

    async def purge_one(self, tenant_id: str, delivery_id: str) -> None:
        query = DeadLetterQuery(tenant_id=tenant_id, ids=(delivery_id,), limit=1)
        if not await self.store.purge_dead(query):
            raise DeadLetterNotFound(f"no dead delivery {delivery_id!r}")


def _unmatched(field: str, unknown: list[str], what: str, hint: str = "") -> DeadLetterNotFound:
    shown = ", ".join(repr(i) for i in unknown[:20]) + (" ..." if len(unknown) > 20 else "")
    return DeadLetterNotFound(
        f"{len(unknown)} of the {field} match no {what}, so nothing was replayed: {shown}{hint}",
        field=field,
        unknown=unknown,
    )
