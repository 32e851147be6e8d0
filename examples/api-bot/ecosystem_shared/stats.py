"""Daily statistics over ``shared.analytics_events`` and ``shared.users`` (digest, /stats), and
each bot's audience from ``shared.bot_audience`` (reachable now, blocks in the period).

Whole local days (the digest, the chart) are read from the daily rollups
(:mod:`ecosystem_shared.rollups`) where they exist; other periods (/stats' last 24 hours) count
events by type from the hourly counts (:mod:`ecosystem_shared.hourly`) and the raw events of
the partial hours at their edges. Recomputing both, after a bulk import say::

    python -m ecosystem_shared.stats rebuild --since 2026-01-01 [--timezone Europe/Moscow]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta

import asyncpg
import pytz

from ecosystem_shared.audience import audience_counts_between
from ecosystem_shared.cli_support import add_common_options, checked_common, iso_day
from ecosystem_shared.hourly import events_by_type, roll_up_hours
from ecosystem_shared.local_days import local_day_bounds
from ecosystem_shared.rollups import last_finished_day, rebuild

# Shown as their own numbers (starts, errors), not again among "other events".
START_EVENT = "user_start"
ERROR_EVENT = "error"


@dataclass(slots=True)
class BotStats:
    new_users: int = 0  # users whose first event in this bot falls in the period
    starts: int = 0  # user_start events
    errors: int = 0  # error events
    events: dict[str, int] = field(default_factory=dict)  # every other event type -> count
    reachable: int | None = None  # users the bot can message now (None: no audience known)
    blocked: int = 0  # users whose block of the bot was observed in the period


@dataclass(slots=True)
class DailyStats:
    period_start: datetime
    period_end: datetime
    new_users: int = 0  # new to the whole ecosystem (shared.users.first_seen in the period)
    bots: dict[str, BotStats] = field(default_factory=dict)


_NEW_TO_ECOSYSTEM = """
SELECT count(*) FROM shared.users WHERE first_seen >= $1 AND first_seen < $2
"""

# Events by type straight from the events: what hourly.events_by_type equals (tests, benchmark).
_EVENTS_BY_TYPE = """
SELECT bot_name, event_type, count(*) AS n
FROM shared.analytics_events
WHERE created_at >= $1 AND created_at < $2 AND ($3::text IS NULL OR bot_name = $3)
GROUP BY bot_name, event_type
"""

# New to a bot: the bot's first event of theirs falls in the period. Each bot's first sight of
# each user is kept in shared.analytics_bot_users (by the analytics writer with every batch, by
# the rollups for imported history), so this is a range count, not an anti-join over every
# event. It can merge with the audience table's first_seen later.
_NEW_PER_BOT = """
SELECT bot_name, count(*) AS n FROM shared.analytics_bot_users
WHERE first_seen >= $1 AND first_seen < $2 AND ($3::text IS NULL OR bot_name = $3)
GROUP BY bot_name
"""

_ROLLED_UP = "SELECT count(*) FROM shared.analytics_rollup_days WHERE zone = $1 AND day = ANY($2)"
_DAY_EVENTS = """
SELECT bot_name, event_type, events AS n FROM shared.analytics_daily_events
WHERE zone = $1 AND day = $2 AND ($3::text IS NULL OR bot_name = $3)
"""
_DAY_NEW_PER_BOT = """
SELECT bot_name, new_to_bot AS n FROM shared.analytics_daily_bots
WHERE zone = $1 AND day = $2 AND ($3::text IS NULL OR bot_name = $3) AND new_to_bot > 0
"""


def _add_counts(stats: DailyStats, rows: list[asyncpg.Record]) -> None:
    for row in rows:
        bot = stats.bots.setdefault(row["bot_name"], BotStats())
        if row["event_type"] == START_EVENT:
            bot.starts = row["n"]
        elif row["event_type"] == ERROR_EVENT:
            bot.errors = row["n"]
        else:
            bot.events[row["event_type"]] = row["n"]


def _add_new_per_bot(stats: DailyStats, rows: list[asyncpg.Record]) -> None:
    for row in rows:
        stats.bots.setdefault(row["bot_name"], BotStats()).new_users = row["n"]


async def _add_audience(
    conn: asyncpg.Connection, stats: DailyStats, bot_name: str | None, timeout: float | None
) -> None:
    """Reachable users now and blocks in the period, per bot: a bot without events in the
    period is listed too when it has an audience."""
    counts = await audience_counts_between(
        conn, stats.period_start, stats.period_end, bot_name=bot_name, timeout=timeout
    )
    for name, audience in counts.items():
        bot = stats.bots.setdefault(name, BotStats())
        bot.reachable, bot.blocked = audience.reachable, audience.blocked_in_period


async def query_day_stats(
    conn: asyncpg.Connection,
    day: date,
    timezone: str,
    bot_name: str | None = None,
    *,
    timeout: float | None = None,
) -> DailyStats:
    """The figures of one local day: from its rollup when there is one, else from the events."""
    start, end = local_day_bounds(day, timezone)
    if not await conn.fetchval(_ROLLED_UP, timezone, [day], timeout=timeout):
        return await query_daily_stats(conn, start, end, bot_name, timeout=timeout)
    stats = DailyStats(start, end)
    stats.new_users = int(await conn.fetchval(_NEW_TO_ECOSYSTEM, start, end, timeout=timeout))
    _add_counts(stats, await conn.fetch(_DAY_EVENTS, timezone, day, bot_name, timeout=timeout))
    _add_new_per_bot(
        stats, await conn.fetch(_DAY_NEW_PER_BOT, timezone, day, bot_name, timeout=timeout)
    )
    await _add_audience(conn, stats, bot_name, timeout)
    return stats


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
    _add_counts(stats, await events_by_type(conn, start, end, bot_name, timeout=timeout))
    rows = await conn.fetch(_NEW_PER_BOT, start, end, bot_name, timeout=timeout)
    _add_new_per_bot(stats, rows)
    await _add_audience(conn, stats, bot_name, timeout)
    return stats


# -- the digest chart: 14 days per bot, days in the digest's time zone ----------------------

CHART_DAYS = 14
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


# A bot's main activity (the third series): the event types it registered in
# shared.analytics_bots (its ANALYTICS_MAIN_EVENTS), or, when it named none, every event but
# starts and errors (shared.is_main_event). Each event adds shared.event_quantity(event_data).
_CHART_ROLLUPS = """
SELECT d.bot_name, d.day, d.active_users, d.new_to_ecosystem AS new_users,
       coalesce((SELECT sum(e.quantity) FROM shared.analytics_daily_events e
                 WHERE e.zone = d.zone AND e.day = d.day AND e.bot_name = d.bot_name
                   AND shared.is_main_event(e.event_type, b.main_events)), 0) AS main_events
FROM shared.analytics_daily_bots d
LEFT JOIN shared.analytics_bots b ON b.bot_name = d.bot_name
WHERE d.zone = $1 AND d.day = ANY($2::date[])
"""

# Days without a rollup (today's /stats chart has none yet): from the events, in the same
# buckets: created_at AT TIME ZONE $2 is the local wall time.
_CHART_EVENTS = """
SELECT e.bot_name, (e.created_at AT TIME ZONE $2)::date AS day,
       count(DISTINCT e.telegram_id) AS active_users,
       coalesce(sum(shared.event_quantity(e.event_data))
                FILTER (WHERE shared.is_main_event(e.event_type, b.main_events)), 0)
           AS main_events
FROM shared.analytics_events e
LEFT JOIN shared.analytics_bots b ON b.bot_name = e.bot_name
WHERE e.created_at >= $1 AND e.created_at < $3
GROUP BY e.bot_name, day
"""

# New to the ecosystem, attributed to the bot of the user's first event.
_CHART_NEW_USERS = """
SELECT first.bot_name, (u.first_seen AT TIME ZONE $2)::date AS day, count(*) AS new_users
FROM shared.users u
CROSS JOIN LATERAL (
    SELECT e.bot_name FROM shared.analytics_events e
    WHERE e.telegram_id = u.telegram_id ORDER BY e.created_at, e.bot_name LIMIT 1
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
    """Per bot and local day of ``timezone``: the :class:`BotSeries` of the last ``days`` days,
    from the rollups where they exist, else from the events."""
    data = ChartData(timezone, end, chart_days(end, timezone, days), language)
    index = {day: position for position, day in enumerate(data.days)}

    def put(row: asyncpg.Record, keys: tuple[str, ...]) -> None:
        position = index.get(row["day"])
        if position is None:
            return
        empty = [0] * len(data.days)
        bot = data.bots.setdefault(
            row["bot_name"], BotSeries(list(empty), list(empty), list(empty))
        )
        for key in keys:
            getattr(bot, key)[position] = int(row[key])

    rows = await conn.fetch(_CHART_ROLLUPS, timezone, data.days, timeout=timeout)
    for row in rows:
        put(row, SERIES)
    rolled = await conn.fetch(
        "SELECT day FROM shared.analytics_rollup_days WHERE zone = $1 AND day = ANY($2::date[])",
        timezone,
        data.days,
        timeout=timeout,
    )
    missing = sorted(set(data.days) - {row["day"] for row in rolled})
    if not missing:
        return data
    start = local_day_bounds(missing[0], timezone)[0]
    stop = local_day_bounds(missing[-1], timezone)[1]
    index = {day: index[day] for day in missing}
    for row in await conn.fetch(_CHART_EVENTS, start, timezone, stop, timeout=timeout):
        put(row, ("active_users", "main_events"))
    for row in await conn.fetch(_CHART_NEW_USERS, start, timezone, stop, timeout=timeout):
        put(row, ("new_users",))
    return data


async def _rebuild(dsn: str, timezone: str, since: date) -> tuple[list[date], int]:
    conn = await asyncpg.connect(dsn)
    try:
        days = await rebuild(conn, timezone, since)
        hours = await roll_up_hours(conn, local_day_bounds(since, timezone)[0])
        return days, hours
    finally:
        await conn.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ecosystem_shared.stats")
    commands = parser.add_subparsers(dest="command", required=True)
    rebuild_parser = commands.add_parser(
        "rebuild",
        help="recompute the daily rollups of every finished day from --since on, and the"
        " hourly counts of every hour from then to now",
    )
    rebuild_parser.add_argument("--since", type=iso_day, required=True, metavar="YYYY-MM-DD")
    add_common_options(rebuild_parser)
    args = parser.parse_args(argv)
    dsn, timezone = checked_common(rebuild_parser, args)
    if args.since > last_finished_day(timezone):
        rebuild_parser.error(f"--since {args.since}: no finished day from then on in {timezone}")
    try:
        days, hours = asyncio.run(_rebuild(dsn, timezone, args.since))
    except (OSError, asyncpg.PostgresError) as error:
        print(f"rebuild failed: {error}", file=sys.stderr)
        return 1
    print(f"rebuilt {len(days)} days ({days[0]} to {days[-1]}) in {timezone}, {hours} hours")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
