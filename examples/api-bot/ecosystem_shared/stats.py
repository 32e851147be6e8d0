"""Daily statistics over ``shared.analytics_events`` and ``shared.users`` (digest, /stats)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time

import asyncpg
import pytz

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


# -- the digest chart: 14 days per bot, days in the digest's time zone ----------------------

CHART_DAYS = 14
# Each bot's main activity: photos and videos sent (media bots; a photo_sent event carries the
# number of photos in "count"), commands (text bots), orders (CRM bots).
MAIN_EVENTS = ("photo_sent", "video_sent", "command_used", "subscription_purchased")
SERIES = ("new_users", "active_users", "main_events")


@dataclass(slots=True)
class BotSeries:
    """One value per day of :attr:`ChartData.days`."""

    new_users: list[int]  # new to the ecosystem: first seen that day, in this bot first
    active_users: list[int]  # distinct users with any event in this bot that day
    main_events: list[int]


@dataclass(slots=True)
class ChartData:
    """What the chart subprocess draws; crosses the process boundary as JSON."""

    timezone: str
    end: datetime  # drawn: the whole days before this moment's day in ``timezone``
    days: list[date]
    language: str = "en"
    bots: dict[str, BotSeries] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not any(sum(values) for bot in self.bots.values() for values in _values(bot))

    def to_json(self) -> str:
        return json.dumps(
            {
                "timezone": self.timezone,
                "end": self.end.isoformat(),
                "days": [day.isoformat() for day in self.days],
                "language": self.language,
                "bots": {name: asdict(series) for name, series in self.bots.items()},
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> ChartData:
        raw = json.loads(text)
        days = [date.fromisoformat(day) for day in raw["days"]]
        bots = {
            str(name): BotSeries(**{key: [int(v) for v in series[key]] for key in SERIES})
            for name, series in raw["bots"].items()
        }
        for name, series in bots.items():
            if any(len(values) != len(days) for values in _values(series)):
                raise ValueError(f"chart data of {name!r}: not one value per day")
        end = datetime.fromisoformat(raw["end"])
        return cls(str(raw["timezone"]), end, days, str(raw.get("language", "en")), bots)


def _values(series: BotSeries) -> tuple[list[int], ...]:
    return tuple(getattr(series, key) for key in SERIES)


def chart_days(end: datetime, timezone: str, count: int = CHART_DAYS) -> list[date]:
    """The ``count`` whole local days before the day of ``end`` in ``timezone`` (oldest first):
    a digest sent in the morning does not end its chart with a day that has barely begun."""
    last = end.astimezone(pytz.timezone(timezone)).date() - timedelta(days=1)
    return [last - timedelta(days=count - 1 - offset) for offset in range(count)]


# Day buckets in the digest's zone: created_at AT TIME ZONE $2 is the local wall time.
_CHART_EVENTS = """
SELECT bot_name, (created_at AT TIME ZONE $2)::date AS day,
       count(DISTINCT telegram_id) AS active_users,
       coalesce(sum(CASE
           WHEN event_type = 'photo_sent' AND jsonb_typeof(event_data -> 'count') = 'number'
               THEN greatest((event_data ->> 'count')::numeric, 0)::bigint
           WHEN event_type = ANY($4::text[]) THEN 1
       END), 0) AS main_events
FROM shared.analytics_events
WHERE created_at >= $1 AND created_at < $3
GROUP BY bot_name, day
"""

# New to the ecosystem, attributed to the bot of the user's first event.
_CHART_NEW_USERS = """
SELECT first.bot_name, (u.first_seen AT TIME ZONE $2)::date AS day, count(*) AS new_users
FROM shared.users u
CROSS JOIN LATERAL (
    SELECT e.bot_name FROM shared.analytics_events e
    WHERE e.telegram_id = u.telegram_id ORDER BY e.created_at, e.id LIMIT 1
) first
WHERE u.first_seen >= $1 AND u.first_seen < $3
GROUP BY first.bot_name, day
"""


async def query_chart_data(
    conn: asyncpg.Connection,
    end: datetime,
    timezone: str,
    *,
    language: str = "en",
    days: int = CHART_DAYS,
    timeout: float | None = None,
) -> ChartData:
    """Per bot and local day of ``timezone``: the :class:`BotSeries` of the last ``days`` days."""
    data = ChartData(timezone, end, chart_days(end, timezone, days), language)
    zone = pytz.timezone(timezone)
    start, stop = (
        zone.localize(datetime.combine(day, dt_time())).astimezone(UTC)
        for day in (data.days[0], data.days[-1] + timedelta(days=1))
    )
    index = {day: position for position, day in enumerate(data.days)}

    def series(name: str) -> BotSeries:
        empty = [0] * len(data.days)
        return data.bots.setdefault(name, BotSeries(list(empty), list(empty), list(empty)))

    rows = await conn.fetch(
        _CHART_EVENTS, start, timezone, stop, list(MAIN_EVENTS), timeout=timeout
    )
    for row in rows:
        if row["day"] in index:
            bot = series(row["bot_name"])
            bot.active_users[index[row["day"]]] = int(row["active_users"])
            bot.main_events[index[row["day"]]] = int(row["main_events"])
    for row in await conn.fetch(_CHART_NEW_USERS, start, timezone, stop, timeout=timeout):
        if row["day"] in index:
            series(row["bot_name"]).new_users[index[row["day"]]] = int(row["new_users"])
    return data
