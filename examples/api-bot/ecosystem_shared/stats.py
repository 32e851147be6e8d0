"""Daily statistics over ``shared.analytics_events`` and ``shared.users`` (digest, /stats)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

# Shown as their own numbers (starts, errors), not again among "other events".
START_EVENT = "user_start"
ERROR_EVENT = "error"


@dataclass(slots=True)
class BotStats:
    new_users: int = 0  # users whose first /start in this bot falls in the period
    starts: int = 0  # user_start events
    errors: int = 0  # error events
    events: dict[str, int] = field(default_factory=dict)  # every other event type -> count


@dataclass(slots=True)
class DailyStats:
    period_start: datetime
    period_end: datetime
    new_users: int = 0  # new to the whole ecosystem (shared.users.first_seen in the period)
    bots: dict[str, BotStats] = field(default_factory=dict)

    @property
    def total_events(self) -> int:
        return sum(b.starts + b.errors + sum(b.events.values()) for b in self.bots.values())


_NEW_TO_ECOSYSTEM = """
SELECT count(*) FROM shared.users WHERE first_seen >= $1 AND first_seen <= $2
"""

_EVENTS_BY_TYPE = """
SELECT bot_name, event_type, count(*) AS n
FROM shared.analytics_events
WHERE created_at >= $1 AND created_at <= $2 AND ($3::text IS NULL OR bot_name = $3)
GROUP BY bot_name, event_type
"""

# A user is new to a bot when no user_start of theirs in that bot precedes the period.
_NEW_PER_BOT = """
SELECT e.bot_name, count(DISTINCT e.telegram_id) AS n
FROM shared.analytics_events e
WHERE e.event_type = 'user_start' AND e.telegram_id IS NOT NULL
  AND e.created_at >= $1 AND e.created_at <= $2 AND ($3::text IS NULL OR e.bot_name = $3)
  AND NOT EXISTS (
    SELECT 1 FROM shared.analytics_events p
    WHERE p.telegram_id = e.telegram_id AND p.bot_name = e.bot_name
      AND p.event_type = 'user_start' AND p.created_at < $1
  )
GROUP BY e.bot_name
"""


async def query_daily_stats(
    conn: asyncpg.Connection,
    start: datetime,
    end: datetime,
    bot_name: str | None = None,
    *,
    timeout: float | None = None,
) -> DailyStats:
    stats = DailyStats(start, end)
    stats.new_users = int(await conn.fetchval(_NEW_TO_ECOSYSTEM, start, end, timeout=timeout))
    for row in await conn.fetch(_EVENTS_BY_TYPE, start, end, bot_name, timeout=timeout):
        bot = stats.bots.setdefault(row["bot_name"], BotStats())
        if row["event_type"] == START_EVENT:
            bot.starts = row["n"]
        elif row["event_type"] == ERROR_EVENT:
            bot.errors = row["n"]
        else:
            bot.events[row["event_type"]] = row["n"]
    for row in await conn.fetch(_NEW_PER_BOT, start, end, bot_name, timeout=timeout):
        stats.bots.setdefault(row["bot_name"], BotStats()).new_users = row["n"]
    return stats
