"""``shared.analytics_events`` partitioned by month: the switch from the plain table, and the
partitions kept ahead.

The SQL lives in ``sql/06-analytics-partitions.sql``. A migration runs in one transaction
under the migration lock, which every starting bot waits for, and a 10-million-event copy would
hold it (and block every writer) for minutes. So the migration only builds the partitioned table;
:func:`finish_partitioning`, run by a bot after it connected, copies the events in batches (each
its own transaction with the progress row) while every bot keeps writing into the plain table,
then copies the remaining rows and swaps the names under a short lock. Writers meanwhile wait for
the lock (their analytics buffer keeps new rows); a lock not granted within
:data:`SWAP_LOCK_TIMEOUT` is retried after more batches. One bot at a time (a session advisory
lock on a connection held throughout); a bot that stops mid-copy leaves the progress for the
next one.

Rows with an id below the copy's progress must all be committed before the copy passes them
(sequence values are taken before commit, so a slow writer may commit id 100 after id 150 was
copied): before each round the copy waits until every transaction that was running when it read
the highest id has ended.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import asyncpg

logger = logging.getLogger(__name__)

COPY_LOCK_KEY = 0x65636F70617274  # "ecopart": one copier at a time
COPY_BATCH = 50_000  # ids per copy transaction
SWAP_TAIL = 20_000  # swap once at most this many ids remain to be copied under the lock
SWAP_LOCK_TIMEOUT = 3.0  # seconds writers may queue behind the swap's lock request
SNAPSHOT_POLL = 0.05
MONTHS_AHEAD = 3

_STATE = """
SELECT shared.analytics_events_parent()::text AS parent, m.copied_upto, m.finished_at
FROM (SELECT 1) one LEFT JOIN shared.analytics_events_migration m ON true
"""
_MAX_ID = "SELECT coalesce(max(id), 0) FROM ONLY shared.analytics_events"
_COPIED = "SELECT copied_upto FROM shared.analytics_events_migration"
_COPY_BATCH = "SELECT shared.analytics_events_copy_batch($1, $2)"
_SNAPSHOT_XMAX = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
_SNAPSHOT_XMIN = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"


@dataclass(slots=True)
class SwitchReport:
    """What :func:`finish_partitioning` did: rows copied in batches and under the lock."""

    copied: int
    tail_rows: int
    writes_blocked_ms: float
    seconds: float


async def pending(conn: asyncpg.Connection) -> bool:
    """True while the partitioned table is being filled (the plain one still takes writes)."""
    if await conn.fetchval("SELECT to_regprocedure('shared.analytics_events_parent()')") is None:
        return False  # 06-analytics-partitions.sql not applied (a bot of an older template)
    state = await conn.fetchrow(_STATE)
    return bool(state and state["parent"] == "shared.analytics_events_partitioned")


async def _wait_for_older_transactions(conn: asyncpg.Connection) -> None:
    """Until every transaction running now has ended: ids they took are committed or gone."""
    horizon = int(await conn.fetchval(_SNAPSHOT_XMAX))
    waited = 0.0
    while int(await conn.fetchval(_SNAPSHOT_XMIN)) < horizon:
        if waited and waited % 60 < SNAPSHOT_POLL:
            logger.warning("Analytics partitioning: waiting for a transaction open for a minute+")
        await asyncio.sleep(SNAPSHOT_POLL)
        waited += SNAPSHOT_POLL


async def _try_swap(conn: asyncpg.Connection) -> tuple[int, float] | None:
    try:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{int(SWAP_LOCK_TIMEOUT * 1000)}ms'")
            tail = await conn.fetchval("SELECT shared.analytics_events_swap()")
            # The swap writes 06's table comment; 11-schema-comments.sql's English one wins
            # (the migrations ran at start, before this).
            await conn.execute("SELECT shared.describe_analytics_events('shared.analytics_events')")
    except asyncpg.LockNotAvailableError:
        logger.info("Analytics partitioning: table busy, switching after another round")
        return None
    blocked = await conn.fetchval("SELECT writes_blocked_ms FROM shared.analytics_events_migration")
    return int(tail or 0), float(blocked or 0.0)


async def _drop_plain_table(conn: asyncpg.Connection) -> None:
    try:
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{int(SWAP_LOCK_TIMEOUT * 1000)}ms'")
            if await conn.fetchval("SELECT shared.analytics_events_drop_plain()"):
                logger.info("Analytics partitioning: the plain table dropped")
    except asyncpg.LockNotAvailableError:
        logger.info("Analytics partitioning: the plain table stays until the next run")


async def finish_partitioning(
    conn: asyncpg.Connection, *, batch: int = COPY_BATCH, swap_tail: int = SWAP_TAIL
) -> SwitchReport | None:
    """Copy the plain table into the partitioned one and switch; None when there was nothing
    to do or another process is doing it. Safe to call from every bot, any number of times."""
    if not await pending(conn):
        if await conn.fetchval("SELECT to_regclass('shared.analytics_events_plain')") is not None:
            await _drop_plain_table(conn)
        return None
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", COPY_LOCK_KEY):
        logger.info("Analytics partitioning: another bot is copying the events")
        return None
    started = time.monotonic()
    copied = 0
    try:
        while await pending(conn):
            target = int(await conn.fetchval(_MAX_ID))
            await _wait_for_older_transactions(conn)
            done = int(await conn.fetchval(_COPIED))
            while done < target:
                reached = int(await conn.fetchval(_COPY_BATCH, target, batch))
                copied += reached - done
                done = reached
            if int(await conn.fetchval(_MAX_ID)) - done > swap_tail:
                logger.info("Analytics partitioning: copied up to id %d", done)
                continue
            swapped = await _try_swap(conn)
            if swapped is not None:
                tail, blocked_ms = swapped
                report = SwitchReport(copied, tail, blocked_ms, time.monotonic() - started)
                logger.info(
                    "Analytics partitioning: switched to the partitioned table (ids copied in"
                    " batches: %d, rows under the lock: %d, writes blocked %.0f ms, %.1f s)",
                    report.copied, report.tail_rows, report.writes_blocked_ms, report.seconds,
                )  # fmt: skip
                await _drop_plain_table(conn)
                return report
        return None
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", COPY_LOCK_KEY)


async def maintain_partitions(
    conn: asyncpg.Connection, months_ahead: int = MONTHS_AHEAD
) -> list[str]:
    """Create the coming months' partitions and those for rows waiting in the default partition;
    returns the partitions created now."""
    if await conn.fetchval("SELECT to_regprocedure('shared.analytics_events_parent()')") is None:
        return []
    rows = await conn.fetch("SELECT * FROM shared.analytics_maintain_partitions($1)", months_ahead)
    made = [str(row[0]) for row in rows]
    if made:
        logger.info("Analytics partitions created: %s", ", ".join(made))
    return made
