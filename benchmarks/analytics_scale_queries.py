"""The scale benchmark's queries, timed: the digest, /stats, the chart, the audience and the
seed's section 7.3 queries (p50, p95), and the sizes of the tables they read."""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from benchmarks.analytics_scale_template import (
    ZONE,
    audience_module,
    hourly_module,
    last_finished_day,
    say,
    stats_module,
)

# The seed's section 7.3 queries, as written there (raw events).
SEED_QUERIES = {
    "7.3 new users (24 h)": "SELECT COUNT(*) FROM shared.users"
    " WHERE first_seen >= NOW() - INTERVAL '24 hours'",
    "7.3 most active users (7 days)": """
        SELECT u.telegram_id, u.username, u.first_name, COUNT(e.id) AS event_count
        FROM shared.users u JOIN shared.analytics_events e ON u.telegram_id = e.telegram_id
        WHERE e.created_at >= NOW() - INTERVAL '7 days'
        GROUP BY u.telegram_id, u.username, u.first_name ORDER BY event_count DESC LIMIT 10""",
    "7.3 events by type (24 h)": """
        SELECT bot_name, event_type, COUNT(*) FROM shared.analytics_events
        WHERE created_at >= NOW() - INTERVAL '24 hours'
        GROUP BY bot_name, event_type ORDER BY bot_name, count DESC""",
    "7.3 events by type per day (rollups, 30 days)": """
        SELECT day, bot_name, event_type, events FROM shared.analytics_daily_events
        WHERE zone = 'Europe/Moscow' AND day >= CURRENT_DATE - 30
        ORDER BY day, bot_name, events DESC""",
    "7.3 history of a user": """
        SELECT bot_name, event_type, event_data, created_at FROM shared.analytics_events
        WHERE telegram_id = 4242 ORDER BY created_at DESC LIMIT 50""",
    "7.3 popular nm_id (7 days, JSONB)": """
        SELECT event_data->>'nm_id' AS nm_id, COUNT(*) AS requests FROM shared.analytics_events
        WHERE event_type = 'article_request' AND created_at >= NOW() - INTERVAL '7 days'
        GROUP BY event_data->>'nm_id' ORDER BY requests DESC LIMIT 20""",
}

# The digest's "new to this bot" before this change: an anti-join over every event.
OLD_NEW_PER_BOT = """
SELECT e.bot_name, count(DISTINCT e.telegram_id) AS n
FROM shared.analytics_events e
WHERE e.event_type = 'user_start' AND e.telegram_id IS NOT NULL
  AND e.created_at >= $1 AND e.created_at <= $2
  AND NOT EXISTS (
    SELECT 1 FROM shared.analytics_events p
    WHERE p.telegram_id = e.telegram_id AND p.bot_name = e.bot_name
      AND p.event_type = 'user_start' AND p.created_at < $1
  )
GROUP BY e.bot_name
"""


async def measure(
    label: str, call: Callable[[], Awaitable[Any]], repeat: int, results: dict[str, Any]
) -> None:
    await call()  # warm the cache and the plan, as a digest sent daily would find them
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    p50 = statistics.median(times)
    p95 = statistics.quantiles(times, n=20)[-1] if len(times) > 1 else times[0]
    results[label] = {"p50_ms": round(p50, 1), "p95_ms": round(p95, 1)}
    say(f"  {label:<55} p50 {p50:8.1f} ms   p95 {p95:8.1f} ms")


async def queries(conn: asyncpg.Connection, repeat: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    now = datetime.now(UTC)
    yesterday = last_finished_day(ZONE, now)
    lo, hi = stats_module.local_day_bounds(yesterday, ZONE)
    day_sql = {
        "digest: rolled up?": (stats_module._ROLLED_UP, (ZONE, [yesterday])),
        "digest: new to the ecosystem": (stats_module._NEW_TO_ECOSYSTEM, (lo, hi)),
        "digest: events by type (rollups)": (stats_module._DAY_EVENTS, (ZONE, yesterday, None)),
        "digest: new to each bot (rollups)": (
            stats_module._DAY_NEW_PER_BOT,
            (ZONE, yesterday, None),
        ),
        "before: events by type (raw day)": (stats_module._EVENTS_BY_TYPE, (lo, hi, None)),
        "before: new to each bot (anti-join)": (OLD_NEW_PER_BOT, (lo, hi)),
        "before: /stats events by type (last 24 h, raw)": (
            stats_module._EVENTS_BY_TYPE,
            (now - timedelta(hours=24), now, None),
        ),
        "/stats: new to each bot (last 24 h, first sights)": (
            stats_module._NEW_PER_BOT,
            (now - timedelta(hours=24), now, None),
        ),
    }
    for label, (sql, params) in day_sql.items():
        await measure(label, functools.partial(conn.fetch, sql, *params), repeat, results)
    day_ago = now - timedelta(hours=24)
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "/stats: events by type (last 24 h, hourly + raw edges)": functools.partial(
            hourly_module.events_by_type, conn, day_ago, now
        ),
        "digest: all of yesterday's figures (query_day_stats)": functools.partial(
            stats_module.query_day_stats, conn, yesterday, ZONE
        ),
        "/stats: all of the last 24 h (query_daily_stats)": functools.partial(
            stats_module.query_daily_stats, conn, day_ago, now
        ),
        "chart: 14 days (query_chart_data, rollups)": functools.partial(
            stats_module.query_chart_data, conn, now, ZONE
        ),
        "digest, /stats: audience per bot (reachable, blocked in the day)": functools.partial(
            audience_module.audience_counts_between, conn, lo, hi
        ),
    }
    for label, call in calls.items():
        await measure(label, call, repeat, results)
    for label, sql in SEED_QUERIES.items():
        await measure(label, functools.partial(conn.fetch, sql), repeat, results)
    return results


async def sizes(conn: asyncpg.Connection) -> dict[str, int]:
    row = await conn.fetchrow(
        """
        SELECT sum(pg_relation_size(c.oid)) AS heap,
               sum(pg_indexes_size(c.oid)) AS indexes,
               sum(pg_total_relation_size(c.oid)) AS total,
               count(*) AS partitions
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'shared.analytics_events'::regclass
        """
    )
    rollups = await conn.fetchval(
        "SELECT sum(pg_total_relation_size(t::regclass)) FROM unnest(ARRAY["
        "'shared.analytics_daily_events', 'shared.analytics_daily_bots',"
        " 'shared.analytics_bot_users', 'shared.analytics_rollup_days']) t"
    )
    found = {key: int(row[key]) for key in ("heap", "indexes", "total", "partitions")}
    found["rollups_and_first_seen"] = int(rollups)
    hourly = await conn.fetchval(
        "SELECT pg_total_relation_size('shared.analytics_hourly_events'::regclass)"
    )
    found["hourly_counts"] = int(hourly)
    mib = {key: f"{value / 2**20:,.0f} MiB" for key, value in found.items() if key != "partitions"}
    say(f"  {found['partitions']} partitions; {mib}")
    return found
