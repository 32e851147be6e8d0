"""Hourly event counts per bot and type (see ``sql/10-analytics-hourly.sql``): what /stats
counts for its last 24 hours, without scanning a day of raw events.

The analytics writer adds every batch's counts in the batch's transaction (:data:`ADD_COUNTS`,
in the statement that also makes the batch's placeholder users: no round trip more per batch);
the bots recompute the last :data:`RECENT_HOURS` hours from the events at start and daily
(:func:`refresh_recent_hours`: the first start after the upgrade fills them, later runs count rows
written by other means); ``python -m ecosystem_shared.stats rebuild --since`` recomputes its range.
Older hours are not filled: only /stats reads them, and it looks back one day.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

logger = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
RECENT_HOURS = 48

# Parameters $2-$5 (after the writer's $1): the columns of :func:`hourly_counts`, keys sorted
# (concurrent writers lock rows in one order).
ADD_COUNTS = """
INSERT INTO shared.analytics_hourly_events AS h (hour, bot_name, event_type, events)
SELECT * FROM unnest($2::timestamptz[], $3::text[], $4::text[], $5::bigint[])
ON CONFLICT (hour, bot_name, event_type) DO UPDATE SET events = h.events + EXCLUDED.events
"""

_COVERED_FROM = "SELECT covered_from FROM shared.analytics_hourly_coverage"

# Whole hours [$3, $4) from the counts, the edges [$1, $3) and [$4, $2) from the events.
_EVENTS_BY_TYPE = """
SELECT bot_name, event_type, sum(n)::bigint AS n FROM (
    SELECT bot_name, event_type, events AS n FROM shared.analytics_hourly_events
    WHERE hour >= $3 AND hour < $4 AND ($5::text IS NULL OR bot_name = $5)
    UNION ALL
    SELECT bot_name, event_type, 1 FROM shared.analytics_events
    WHERE created_at >= $1 AND created_at < $3 AND ($5::text IS NULL OR bot_name = $5)
    UNION ALL
    SELECT bot_name, event_type, 1 FROM shared.analytics_events
    WHERE created_at >= $4 AND created_at < $2 AND ($5::text IS NULL OR bot_name = $5)
) parts
GROUP BY bot_name, event_type
"""


def floor_hour(moment: datetime) -> datetime:
    """The start of the UTC hour of an aware ``moment``."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    start = floor_hour(moment)
    return start if start == moment else start + HOUR


def hourly_counts(events: Iterable[tuple[Any, ...]]) -> list[list[Any]]:
    """Columns for :data:`ADD_COUNTS` from event rows (telegram_id, bot_name, event_type,
    event_data, created_at)."""
    # Whole epoch hours: a quarter of floor_hour()'s cost per row, on the writer's path.
    counts = Counter((int(row[4].timestamp() // 3600), row[1], row[2]) for row in events)
    keys = sorted(counts)
    return [[datetime.fromtimestamp(k[0] * 3600, UTC) for k in keys], [k[1] for k in keys],
            [k[2] for k in keys], [counts[k] for k in keys]]  # fmt: skip


async def events_by_type(
    conn: asyncpg.Connection,
    start: datetime,
    end: datetime,
    bot_name: str | None = None,
    *,
    timeout: float | None = None,
) -> list[asyncpg.Record]:
    """(bot_name, event_type, n) of the events in [start, end): the covered whole hours from
    the counts, the rest from the events. Equal to counting the events themselves."""
    covered_from = await conn.fetchval(_COVERED_FROM, timeout=timeout)
    lo = ceil_hour(start) if covered_from is None else max(ceil_hour(start), covered_from)
    hi = floor_hour(end)
    if covered_from is None or lo >= hi:
        lo = hi = end  # nothing whole to read from the counts: all raw
    return list(await conn.fetch(_EVENTS_BY_TYPE, start, end, lo, hi, bot_name, timeout=timeout))


async def roll_up_hours(
    conn: asyncpg.Connection, since: datetime, *, now: datetime | None = None
) -> int:
    """Recompute every hour from the one of ``since`` to the current one, one transaction
    each (writers wait at most one hour's count), then mark them covered. The hours done."""
    hour, last = floor_hour(since), floor_hour(now or datetime.now(UTC))
    done = 0
    while hour <= last:
        async with conn.transaction():
            await conn.execute("SELECT shared.analytics_rollup_hour($1)", hour)
        hour += HOUR
        done += 1
    await conn.execute("SELECT shared.analytics_hourly_cover($1)", floor_hour(since))
    return done


async def refresh_recent_hours(conn: asyncpg.Connection, *, now: datetime | None = None) -> int:
    """The last :data:`RECENT_HOURS` hours and the current one, recomputed."""
    moment = now or datetime.now(UTC)
    done = await roll_up_hours(conn, moment - RECENT_HOURS * HOUR, now=moment)
    logger.info("Analytics hourly counts: %d hours recomputed", done)
    return done
