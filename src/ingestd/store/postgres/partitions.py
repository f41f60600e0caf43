"""Retention by day: events and deliveries are partitioned by day on their ids (an id is
`day << 32 | counter`, so the id names its partition). A whole day is dropped (both
tables, one short ACCESS EXCLUSIVE lock with a lock timeout) once it is past the retention
and every delivery in it is finished; old data leaves without long DELETEs or vacuum
storms. Only the narrow `event_ids` rows of a dropped day are deleted row by row.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from psycopg import sql

from ingestd.store.postgres.connections import Conn
from ingestd.store.sql import queries

log = logging.getLogger("ingestd.store.postgres")
Q = queries("postgres")

DAY = 86400.0
AHEAD = 2
"""Partitions are made for today and this many days ahead."""


def day_of(t: float) -> int:
    return int(t // DAY)


def id_base(t: float) -> int:
    """The first id of the day partition that holds rows made at `t`."""
    return day_of(t) << 32


async def drop_day(conn: Conn, day: int, dead_cutoff: float) -> tuple[int, int] | None:
    """Drop one day's partitions if every delivery in it is finished (and its dead letters
    are past their retention); returns (events, dead deliveries) dropped."""
    deliveries = sql.Identifier(f"deliveries_p{day}")
    events = sql.Identifier(f"events_p{day}")
    busy = sql.SQL(
        "SELECT EXISTS (SELECT 1 FROM {d} WHERE state IN ('pending', 'running', 'failed'))"
        " OR EXISTS (SELECT 1 FROM {d} WHERE state = 'dead' AND updated_at >= %s)"
    ).format(d=deliveries)

    async def scalar(query: sql.Composed, *params: Any) -> Any:
        row = await (await conn.execute(query, params or None)).fetchone()
        return row[0] if row else None

    if await scalar(busy, dead_cutoff):
        return None
    n_events = await scalar(sql.SQL("SELECT count(*) FROM {e}").format(e=events))
    n_dead = await scalar(
        sql.SQL("SELECT count(*) FROM {d} WHERE state = 'dead'").format(d=deliveries)
    )
    try:
        async with conn.transaction():
            # Short and bounded: new queries queue behind an ACCESS EXCLUSIVE request.
            await conn.execute("SET LOCAL lock_timeout = '200ms'")
            await conn.execute("LOCK TABLE ONLY deliveries, ONLY events IN ACCESS EXCLUSIVE MODE")
            if await scalar(busy, dead_cutoff):
                return None
            await conn.execute(sql.SQL("DROP TABLE {d}, {e}").format(d=deliveries, e=events))
            # Its attempts go with it (a day made before the attempt log has none).
            attempts = sql.Identifier(f"delivery_attempts_p{day}")
            await conn.execute(sql.SQL("DROP TABLE IF EXISTS {a}").format(a=attempts))
    except psycopg.errors.LockNotAvailable:
        log.info("partitions of day %d are busy; dropping them at the next prune", day)
        return None
    await _delete_event_ids(conn, day)
    return int(n_events), int(n_dead)


async def _delete_event_ids(conn: Conn, day: int) -> None:
    """Forget the event ids of a dropped day, in short batches (no long transaction)."""
    lo, hi = day << 32, (day + 1) << 32
    while (
        await conn.execute(Q["prune_event_ids_range"], {"lo": lo, "hi": hi, "limit": 10_000})
    ).rowcount == 10_000:
        pass


async def sweep_event_ids(conn: Conn) -> None:
    """Event ids of days whose partitions are gone (a prune interrupted after its DROP)."""
    days = {r[0] for r in await (await conn.execute(Q["partition_days"])).fetchall()}
    for (day,) in await (await conn.execute(Q["event_id_days"])).fetchall():
        if day not in days:
            await _delete_event_ids(conn, day)
