"""Plausible bot activity for charts: synthetic series, and rows that reproduce them in the DB.

:func:`synthetic_series` is deterministic for a seed (weekly rhythm, slow growth, noise), so a
rendered example stays the same from run to run. :func:`insert_activity` writes users and
events into ``shared.users`` / ``shared.analytics_events`` such that
:func:`ecosystem_shared.stats.query_chart_data` reads the very same series back.
"""

from __future__ import annotations

import itertools
import json
import random
import zlib
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from datetime import time as dt_time

import asyncpg
import pytz

from ecosystem_shared.stats import BotSeries

__all__ = ["insert_activity", "synthetic_series"]

# Main event per bot, by a hint in its name; photo_sent events carry "count".
MAIN_EVENT_BY_HINT = (("crm", "subscription_purchased"), ("picture", "photo_sent"))
DEFAULT_MAIN_EVENT = "command_used"
FIRST_ID = 7_000_000_000  # above real users' ids in a shared test database


def synthetic_series(
    names: Iterable[str], days: list[date], *, seed: int = 2026, scale: float = 1.0
) -> dict[str, BotSeries]:
    """Per bot: active users with a weekly rhythm and growth, new users a share of them, main
    events a few per active user. ``scale`` shrinks or grows every number."""
    result: dict[str, BotSeries] = {}
    for name in names:
        rng = random.Random(seed ^ zlib.crc32(name.encode()))
        base = rng.uniform(20, 120) * scale
        growth = rng.uniform(-0.01, 0.04)
        weekend = rng.uniform(0.7, 1.4)
        per_user = rng.uniform(1.2, 4.0)
        new_share = rng.uniform(0.15, 0.45)
        series = BotSeries([], [], [])
        for offset, day in enumerate(days):
            level = base * (1 + growth) ** offset * (weekend if day.weekday() >= 5 else 1.0)
            active = max(0, round(level * rng.uniform(0.85, 1.15)))
            series.active_users.append(active)
            series.new_users.append(min(active, round(active * new_share * rng.uniform(0.6, 1.4))))
            series.main_events.append(round(active * per_user * rng.uniform(0.8, 1.2)))
        result[name] = series
    return result


def main_event(name: str) -> str:
    lowered = name.casefold()
    return next(
        (event for hint, event in MAIN_EVENT_BY_HINT if hint in lowered), DEFAULT_MAIN_EVENT
    )


async def insert_activity(
    conn: asyncpg.Connection,
    series: Mapping[str, BotSeries],
    days: list[date],
    timezone: str,
    *,
    first_id: int = FIRST_ID,
    at: dt_time = dt_time(0, 5),
) -> None:
    """Rows behind ``series``: each day's new users start at local time ``at`` in their bot;
    the other active users were first seen 60 days earlier; main events are anonymous
    (``telegram_id`` NULL) so they do not add active users. Photos go in batches of up to 3."""
    zone = pytz.timezone(timezone)
    ids = itertools.count(first_id)
    users: list[tuple[int, str, datetime]] = []
    events: list[tuple[int | None, str, str, str | None, datetime]] = []
    for name, bot in series.items():
        kind = main_event(name)
        for index, day in enumerate(days):
            moment = zone.localize(datetime.combine(day, at))
            new, active, main = (
                bot.new_users[index],
                bot.active_users[index],
                bot.main_events[index],
            )
            for _ in range(new):
                user = next(ids)
                users.append((user, f"u{user}", moment))
                events.append((user, name, "user_start", None, moment))
            for _ in range(active - new):
                user, first = next(ids), moment - timedelta(days=60)
                users.append((user, f"u{user}", first))
                events.append((user, name, "user_start", None, first))
                events.append((user, name, "message_seen", None, moment))
            while main > 0:
                count = min(main, 3) if kind == "photo_sent" else 1
                data = json.dumps({"count": count}) if kind == "photo_sent" else None
                events.append((None, name, kind, data, moment + timedelta(minutes=1)))
                main -= count
    # Each bot names its main events, as its ANALYTICS_MAIN_EVENTS would at start.
    await conn.executemany(
        "INSERT INTO shared.analytics_bots (bot_name, main_events) VALUES ($1, $2)"
        " ON CONFLICT (bot_name) DO UPDATE SET main_events = EXCLUDED.main_events",
        [(name, [main_event(name)]) for name in series],
    )
    await conn.executemany(
        "INSERT INTO shared.users (telegram_id, first_name, first_seen, last_seen)"
        " VALUES ($1, $2, $3, $3)",
        users,
    )
    await conn.executemany(
        "INSERT INTO shared.analytics_events (telegram_id, bot_name, event_type, event_data,"
        " created_at) VALUES ($1, $2, $3, $4::text::jsonb, $5)",
        events,
    )
