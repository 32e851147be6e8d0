"""Daily rollups of ``shared.analytics_events`` (see ``sql/07-analytics-rollups.sql``).

Days are local days of the digest's time zone. The bots roll up every finished day that has no
rollup yet, from the first day with events on (so the first start after the upgrade fills the
past), and again a day whose rollup was made less than :data:`LATE_ROWS_GRACE` after its end
(rows an analytics buffer kept through an outage arrive late). One process at a time (an
advisory lock); any number of runs give the same rows.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytz

logger = logging.getLogger(__name__)

ROLLUP_LOCK_KEY = 0x65636F726F6C6C  # "ecoroll"
LATE_ROWS_GRACE = timedelta(hours=1)

_FIRST_EVENT = "SELECT min(created_at) FROM shared.analytics_events"
# Finished days from `first` to `last` without a rollup made after the day's end + grace.
_DAYS_TO_ROLL = """
SELECT d::date AS day
FROM generate_series($2::date, $3::date, interval '1 day') d
LEFT JOIN shared.analytics_rollup_days r ON r.zone = $1 AND r.day = d::date
WHERE r.day IS NULL
   OR r.computed_at < ((d::date + 1)::timestamp AT TIME ZONE $1) + $4::interval
ORDER BY 1
"""


def last_finished_day(timezone: str, now: datetime | None = None) -> date:
    """Yesterday in ``timezone``: the latest day that has ended there."""
    moment = (now or datetime.now(UTC)).astimezone(pytz.timezone(timezone))
    return moment.date() - timedelta(days=1)


async def roll_up_day(conn: asyncpg.Connection, timezone: str, day: date) -> None:
    await conn.execute("SELECT shared.analytics_rollup_day($1, $2)", timezone, day)


async def _locked(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", ROLLUP_LOCK_KEY))


async def _unlock(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", ROLLUP_LOCK_KEY)


async def roll_up_finished_days(
    conn: asyncpg.Connection, timezone: str, *, now: datetime | None = None
) -> list[date]:
    """Roll up the finished days that need it (oldest first); the days done. Another process
    rolling up at the same time: nothing here, the other one does it."""
    last = last_finished_day(timezone, now)
    if not await _locked(conn):
        return []
    try:
        first_event = await conn.fetchval(_FIRST_EVENT)
        if first_event is None:
            return []
        first = first_event.astimezone(pytz.timezone(timezone)).date()
        rows = await conn.fetch(_DAYS_TO_ROLL, timezone, first, last, LATE_ROWS_GRACE)
        days = [row["day"] for row in rows]
        for day in days:
            await roll_up_day(conn, timezone, day)
    finally:
        await _unlock(conn)
    if days:
        logger.info(
            "Analytics rollups (%s): %d days, %s to %s", timezone, len(days), days[0], days[-1]
        )
    return days


# The events after the last rolled-up day (in any zone) into each bot's first sights: what the
# analytics writer adds with every batch, for rows it did not write (a writer of an older
# template during an upgrade, an import).
_CATCH_UP_FIRST_SIGHTS = """
INSERT INTO shared.analytics_bot_users AS b (telegram_id, bot_name, first_seen)
SELECT e.telegram_id, e.bot_name, min(e.created_at)
FROM shared.analytics_events e
WHERE e.telegram_id IS NOT NULL AND e.created_at >= coalesce(
    (SELECT max((day + 1)::timestamp AT TIME ZONE zone) FROM shared.analytics_rollup_days),
    '-infinity')
GROUP BY e.telegram_id, e.bot_name
ORDER BY e.telegram_id, e.bot_name
ON CONFLICT (telegram_id, bot_name) DO UPDATE SET first_seen = EXCLUDED.first_seen
    WHERE EXCLUDED.first_seen < b.first_seen
"""


async def catch_up_first_sights(conn: asyncpg.Connection) -> None:
    await conn.execute(_CATCH_UP_FIRST_SIGHTS)


async def rebuild(
    conn: asyncpg.Connection, timezone: str, since: date, *, now: datetime | None = None
) -> list[date]:
    """Recompute every finished day from ``since`` on (after a bulk import, say): each bot's
    first sight of a user from that day on is recomputed too. Waits for a running roll-up."""
    last = last_finished_day(timezone, now)
    await conn.execute("SELECT pg_advisory_lock($1)", ROLLUP_LOCK_KEY)
    try:
        days = [since + timedelta(days=n) for n in range((last - since).days + 1)]
        async with conn.transaction():
            await conn.execute(
                "DELETE FROM shared.analytics_bot_users"
                " WHERE first_seen >= (SELECT lo FROM shared.local_day_bounds($1, $2))",
                timezone,
                since,
            )
            await conn.execute(
                "DELETE FROM shared.analytics_rollup_days WHERE zone = $1 AND day >= $2",
                timezone,
                since,
            )
            for day in days:
                await roll_up_day(conn, timezone, day)
            await catch_up_first_sights(conn)  # today's, deleted above
    finally:
        await _unlock(conn)
    logger.info("Analytics rollups (%s) rebuilt: %d days from %s", timezone, len(days), since)
    return days
