"""Benchmark: the shared analytics at scale (partitions, rollups, the switch from a plain table).

    python benchmarks/analytics_scale.py                        # 10 M events, see README.md
    python benchmarks/analytics_scale.py --events 100000000     # the issue's 100 M (hours, disk)
    python benchmarks/analytics_scale.py --events 200000 --migrate-events 100000 --repeat 5

Uses the template's own code (``template/ecosystem_shared`` on ``sys.path``) against a real
PostgreSQL: ``TEST_DATABASE_URL`` (a server where it may create and drop databases), else a
throwaway cluster of the test kit. Steps, each timed and printed:

1. **Generate** ``--events`` events of ``--bots`` bots and ``--users`` users over ``--days``
   days ending now, with the seed's event mix (section 7.2: user_start, article_request,
   photo_sent with a count, video_sent, error, and the custom subscription_purchased,
   api_request_success, command_used), by ``INSERT ... SELECT generate_series`` month by month
   into the partitioned table (every index, the GIN index and the foreign key maintained).
2. **Roll up** every finished day and recount the last 48 hours' hourly counts (what a bot
   does after the upgrade), then fill the audience
   (``shared.bot_audience``) the way ``04-audience.sql`` does for an ecosystem deployed before it,
   and mark 5 % of its rows blocked over the last days.
3. **Queries**, ``--repeat`` times each, p50 and p95: the digest of yesterday (rollups), the
   same figures from the raw events with the anti-join the template used before, ``/stats``'s
   last 24 hours (hourly counts and raw edges; the raw scan it replaced, side by side), the
   14-day chart data, the audience per bot, and the seed's section 7.3 queries.
4. **Ingest**: the analytics writer (``Analytics``: buffer, batches, binary COPY) into the
   partitioned table, into a plain one, into the partitioned one without the audience's
   per-batch upsert, and into both without the hourly counts' per-batch upsert (the writer
   before them), ``--ingest-rounds`` interleaved rounds of ``--ingest-rows`` events each, in
   one run.
5. **Sizes** of the table, its indexes and the rollups.
6. **Switch** a plain table of ``--migrate-events`` events to the partitioned one while a writer
   keeps adding events: total time, writes blocked, rows lost or duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib
import json
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "template"))


def _shared(module: str) -> ModuleType:
    """A module of the template's ecosystem_shared (imported from template/, not installed)."""
    return importlib.import_module(f"ecosystem_shared.{module}")


stats_module = _shared("stats")
audience_module = _shared("audience")
# Its upsert_sights and before_events are swapped in step 4 (the cost of each).
store_module: Any = _shared("analytics_store")
hourly_module = _shared("hourly")
postgres = _shared("testing.postgres")
Analytics: Any = _shared("analytics").Analytics
Database: Any = _shared("db").Database
configure_connection: Any = _shared("db").configure_connection
apply_migrations: Any = _shared("migrations").apply_migrations
shared_migrations: Any = _shared("migrations").shared_migrations
finish_partitioning: Any = _shared("partitions").finish_partitioning
last_finished_day: Any = _shared("rollups").last_finished_day
roll_up_finished_days: Any = _shared("rollups").roll_up_finished_days
catch_up_first_sights: Any = _shared("rollups").catch_up_first_sights
refresh_recent_hours: Any = hourly_module.refresh_recent_hours

ZONE = "Europe/Moscow"
PLAIN_SCHEMA = [path for path in shared_migrations() if path.name < "06"]
# The same writer against a plain table: every shared table but the partitioned events.
PLAIN_INGEST = [path for path in shared_migrations() if not path.name.startswith("06")]

# The seed's mix (share of events): starts, the picture bot's article/photo/video events,
# errors, and custom events of other bots.
MIX = [
    ("user_start", 10), ("article_request", 25), ("photo_sent", 25), ("video_sent", 8),
    ("command_used", 20), ("subscription_purchased", 3), ("api_request_success", 7),
    ("error", 2),
]  # fmt: skip

GENERATE = """
INSERT INTO shared.analytics_events (telegram_id, bot_name, event_type, event_data, created_at)
SELECT 1 + (hashint % $3), 'Bot ' || ((hashint / 7) % $4),
       kind,
       CASE kind WHEN 'photo_sent' THEN jsonb_build_object('count', 1 + g % 10, 'nm_id', nm)
                 WHEN 'article_request' THEN jsonb_build_object('nm_id', nm)
                 WHEN 'video_sent' THEN jsonb_build_object('nm_id', nm)
                 WHEN 'error' THEN jsonb_build_object('error', 'timeout')
                 ELSE NULL END,
       $5::timestamptz + (g::float8 / $8) * ($6::timestamptz - $5::timestamptz)
FROM generate_series($1::bigint, $1::bigint + $2 - 1) g
CROSS JOIN LATERAL (SELECT (g * 2654435761) % 4294967296 AS hashint,
                           10000000 + (g * 7919) % 50000 AS nm) h
CROSS JOIN LATERAL (SELECT ($7::text[])[1 + (g * 40503) % cardinality($7::text[])] AS kind) k
"""

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


def say(text: str) -> None:
    print(text, flush=True)


def kinds() -> list[str]:
    return [kind for kind, share in MIX for _ in range(share)]


@contextlib.asynccontextmanager
async def database(admin_url: str, prefix: str) -> AsyncIterator[str]:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    await postgres.admin(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield postgres.with_database(admin_url, name)
    finally:
        await postgres.admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def connect(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await configure_connection(conn)
    return conn


async def deferrable(
    conn: asyncpg.Connection, table: str
) -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
    """Foreign keys and non-primary indexes of ``table``, with their definitions and whether
    each is valid (an index of a partitioned table is valid once every partition has it)."""
    keys = await conn.fetch(
        "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint"
        " WHERE conrelid = $1::regclass AND contype = 'f' ORDER BY conname",
        table,
    )
    indexes = await conn.fetch(
        "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def,"
        " i.indisvalid AS valid"
        " FROM pg_index i WHERE i.indrelid = $1::regclass AND NOT i.indisprimary ORDER BY 1",
        table,
    )
    return keys, indexes


@contextlib.asynccontextmanager
async def bulk_load(conn: asyncpg.Connection, *, keep: bool) -> AsyncIterator[None]:
    """The events' secondary indexes and foreign key dropped for the load, then made again
    from their own definitions (as ``pg_restore`` does): one sorted build per index and one
    check of the key instead of upkeep per row. The primary key stays (ids stay unique)."""
    if keep:
        yield
        return
    table = "shared.analytics_events"
    keys, indexes = await deferrable(conn, table)
    for key in keys:
        await conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{key["conname"]}"')
    for index in indexes:
        await conn.execute(f"DROP INDEX {index['name']}")
    yield
    started = time.perf_counter()
    await conn.execute("SET maintenance_work_mem = '256MB'")
    for index in indexes:
        # A partitioned table's index reads "ON ONLY": that would make the parent's alone.
        await conn.execute(index["def"].replace(" ON ONLY ", " ON ", 1))
    for key in keys:
        await conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{key["conname"]}" {key["def"]}')
    await conn.execute("RESET maintenance_work_mem")
    if await deferrable(conn, table) != (keys, indexes):
        raise RuntimeError("the indexes or foreign key made again differ from the dropped ones")
    say(
        f"  {len(indexes)} indexes and {len(keys)} foreign key made in"
        f" {time.perf_counter() - started:.0f} s"
    )


async def generate(conn: asyncpg.Connection, url: str, args: argparse.Namespace) -> float:
    """Users, then events in chunks (each its own transaction, ``--jobs`` at once); seconds."""
    end = datetime.now(UTC)
    start = end - timedelta(days=args.days)
    started = time.perf_counter()
    await conn.execute(
        "INSERT INTO shared.users (telegram_id, first_name, username, first_seen, last_seen)"
        " SELECT g, 'User ' || g, 'u' || g, $2::timestamptz + (g::float8 / $1) * ($3::timestamptz"
        " - $2::timestamptz), $3 FROM generate_series(1, $1) g",
        args.users,
        start,
        end,
    )
    # The partitions of the range first, as an operator importing history would (else the rows
    # land in the default partition and the bots' maintenance moves them later).
    if await conn.fetchval("SELECT to_regprocedure('shared.analytics_events_parent()')"):
        await conn.execute(
            "SELECT shared.analytics_create_partition(shared.analytics_events_parent(), m::date)"
            " FROM generate_series(date_trunc('month', $1::timestamptz AT TIME ZONE 'UTC'),"
            " $2::timestamptz AT TIME ZONE 'UTC', interval '1 month') m",
            start,
            end,
        )
    chunk = max(args.events // 100, 10_000)
    # Chunks of consecutive rows: the ones running at once fill different months (partitions).
    pending = [(first, min(chunk, args.events - first)) for first in range(0, args.events, chunk)]
    done = 0

    async def worker(url: str) -> None:
        nonlocal done
        extra = await connect(url)
        try:
            while pending:
                first, size = pending.pop(0)
                await extra.execute(
                    GENERATE, first, size, args.users, args.bots, start, end, kinds(), args.events
                )
                done += size
                elapsed = time.perf_counter() - started
                say(f"  generated {done:,} events in {elapsed:.0f} s ({done / elapsed:,.0f}/s)")
        finally:
            await extra.close()

    async with bulk_load(conn, keep=args.keep_indexes):
        await asyncio.gather(*(worker(url) for _ in range(max(args.jobs, 1))))
    await conn.execute("ANALYZE shared.analytics_events; ANALYZE shared.users")
    return time.perf_counter() - started


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
    await measure(
        "/stats: events by type (last 24 h, hourly + raw edges)",
        lambda: hourly_module.events_by_type(conn, now - timedelta(hours=24), now),
        repeat,
        results,
    )
    await measure(
        "digest: all of yesterday's figures (query_day_stats)",
        lambda: stats_module.query_day_stats(conn, yesterday, ZONE),
        repeat,
        results,
    )
    await measure(
        "/stats: all of the last 24 h (query_daily_stats)",
        lambda: stats_module.query_daily_stats(conn, now - timedelta(hours=24), now),
        repeat,
        results,
    )
    await measure(
        "chart: 14 days (query_chart_data, rollups)",
        lambda: stats_module.query_chart_data(conn, now, ZONE),
        repeat,
        results,
    )
    await measure(
        "digest, /stats: audience per bot (reachable, blocked in the day)",
        lambda: audience_module.audience_counts_between(conn, lo, hi),
        repeat,
        results,
    )
    for label, sql in SEED_QUERIES.items():
        await measure(label, functools.partial(conn.fetch, sql), repeat, results)
    return results


async def fill_audience(conn: asyncpg.Connection) -> dict[str, Any]:
    """04-audience.sql's backfill over the generated events (the table is empty: the events
    came after the migrations), then 5 % of the rows blocked within the last four days."""
    sql = next(p for p in shared_migrations() if p.name.startswith("04")).read_text("utf-8")
    started = time.perf_counter()
    await conn.execute(sql)
    seconds = time.perf_counter() - started
    rows = int(await conn.fetchval("SELECT count(*) FROM shared.bot_audience"))
    await conn.execute(
        "UPDATE shared.bot_audience SET blocked_at = now() - (telegram_id % 96) * interval '1 hour'"
        " WHERE telegram_id % 20 = 0"
    )
    await conn.execute("VACUUM ANALYZE shared.bot_audience")
    say(f"   {rows:,} audience rows in {seconds:.1f} s")
    return {"seconds": round(seconds, 1), "rows": rows}


async def _skipped(*args: Any, **kwargs: Any) -> None:
    return None


async def _placeholders_only(
    conn: asyncpg.Connection, missing: list[int], events: Any, timeout: float
) -> None:
    """The writer before the hourly counts: placeholder users only, when there are any."""
    if missing:
        await conn.execute(store_module.PLACEHOLDER_USERS, missing, timeout=timeout)


async def ingest_once(
    url: str, rows: int, label: str, *, audience: bool = True, hourly: bool = True
) -> float:
    """Events/s of one flush; ``audience=False``, ``hourly=False``: without the audience's or
    the hourly counts' per-batch upsert."""
    db = Database(url)
    await db.start()
    upsert_sights, before_events = store_module.upsert_sights, store_module.before_events
    if not audience:
        store_module.upsert_sights = _skipped
    if not hourly:
        store_module.before_events = _placeholders_only
    try:
        analytics = Analytics(db, label, buffer_size=rows, batch_size=500)
        for i in range(rows):
            await analytics.track_event(1 + i % 1000, "photo_sent", {"count": 3, "nm_id": i})
        started = time.perf_counter()
        written = await analytics.flush()
        elapsed = time.perf_counter() - started
        if written != rows or analytics.dropped:
            raise RuntimeError(f"{label}: wrote {written}/{rows}, {analytics.dropped} dropped")
        await analytics.close()
        return float(rows / elapsed)
    finally:
        store_module.upsert_sights = upsert_sights
        store_module.before_events = before_events
        await db.close()


async def ingest(admin_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Events/s of the analytics writer's flush into each table, interleaved rounds; also into
    the partitioned one without the audience's upsert, and into both without the hourly counts'
    upsert (the cost of each, side by side)."""
    variants = ("partitioned", "plain", "no audience", "no hourly", "plain, no hourly")
    rates: dict[str, list[float]] = {kind: [] for kind in variants}
    async with (
        database(admin_url, "scale_ingest_part") as part_url,
        database(admin_url, "scale_ingest_plain") as plain_url,
    ):
        for url, files in ((part_url, shared_migrations()), (plain_url, PLAIN_INGEST)):
            conn = await connect(url)
            await apply_migrations(conn, files)
            await conn.execute(
                "INSERT INTO shared.users (telegram_id, first_name)"
                " SELECT g, 'U' FROM generate_series(1, 1000) g"
            )
            await conn.close()
        for round_ in range(args.ingest_rounds):
            shift = round_ % len(variants)
            for kind in variants[shift:] + variants[:shift]:
                url = plain_url if kind.startswith("plain") else part_url
                rate = await ingest_once(
                    url,
                    args.ingest_rows,
                    f"ingest {kind}",
                    audience=kind != "no audience",
                    hourly="no hourly" not in kind,
                )
                rates[kind].append(rate)
                say(f"  round {round_ + 1} {kind:<12} {rate:10,.0f} events/s")
    part, plain, bare, unhourly, plain_before = (statistics.median(rates[k]) for k in variants)
    say(f"  median: partitioned {part:,.0f}/s, plain {plain:,.0f}/s, ratio {part / plain:.3f}")
    say(f"  audience upsert: {bare:,.0f}/s without it, with/without {part / bare:.3f}")
    say(f"  hourly upsert: {unhourly:,.0f}/s without it, with/without {part / unhourly:.3f}")
    say(f"  partitioned with it / plain without it ({plain_before:,.0f}/s):"
        f" {part / plain_before:.3f}")  # fmt: skip
    return {
        "partitioned_per_s": part,
        "plain_per_s": plain,
        "ratio": part / plain,
        "no_audience_per_s": bare,
        "audience_ratio": part / bare,
        "no_hourly_per_s": unhourly,
        "hourly_ratio": part / unhourly,
        "plain_no_hourly_per_s": plain_before,
        "ratio_to_plain_before": part / plain_before,
        **rates,
    }


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


async def switch(admin_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """A plain table of --migrate-events events switched while a writer adds events."""
    async with database(admin_url, "scale_switch") as url:
        conn = await connect(url)
        try:
            await apply_migrations(conn, PLAIN_SCHEMA)
            gen = argparse.Namespace(**{**vars(args), "events": args.migrate_events})
            say(f"  generating {args.migrate_events:,} events in the plain table")
            await generate(conn, url, gen)
            before = await conn.fetchrow(
                "SELECT count(*) AS n, sum(id) AS s FROM shared.analytics_events"
            )
            db = Database(url, migrations=shared_migrations())
            await db.start()  # applies 06-08: the copy stays pending
            writer = Analytics(db, "Switch writer", flush_seconds=0.05)
            await writer.start()
            stop = asyncio.Event()
            written = 0

            async def write() -> None:
                nonlocal written
                while not stop.is_set():
                    await writer.track_event(1 + written % 1000, "during_switch")
                    written += 1
                    await asyncio.sleep(0.001)

            task = asyncio.create_task(write())
            started = time.perf_counter()
            report = await finish_partitioning(conn)
            seconds = time.perf_counter() - started
            await asyncio.sleep(0.5)
            stop.set()
            await task
            await writer.flush()
            await writer.close()
            await db.close()
            after = await conn.fetchrow(
                "SELECT count(*) AS n, count(DISTINCT id) AS d, sum(id) AS s,"
                " (SELECT sum(id) FROM shared.analytics_events"
                "  WHERE event_type = 'during_switch') AS w FROM shared.analytics_events"
            )
        finally:
            await conn.close()
    if report is None:
        raise RuntimeError("the switch did not happen")
    expected = before["n"] + written
    result = {
        "events": before["n"],
        "written_during": written,
        "seconds": round(seconds, 1),
        "writes_blocked_ms": round(report.writes_blocked_ms, 1),
        "rows_under_lock": report.tail_rows,
        "lost": expected - after["d"],
        "duplicated": after["n"] - after["d"],
        "ids_kept": after["s"] == before["s"] + (after["w"] or 0),
        "writer_dropped": writer.dropped,
    }
    say(f"  {result}")
    return result


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"args": vars(args)}
    with postgres.running_server() as admin_url:
        if args.events:
            await scale(admin_url, args, out)
        if args.ingest_rounds:
            say(f"4. ingest, {args.ingest_rounds} rounds of {args.ingest_rows:,} events")
            out["ingest"] = await ingest(admin_url, args)
        if args.migrate_events:
            say(f"6. switching a plain table of {args.migrate_events:,} events")
            out["switch"] = await switch(admin_url, args)
    return out


async def scale(admin_url: str, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Steps 1, 2, 2b, 3 and 5: generate, roll up, fill the audience, time the queries, sizes."""
    async with database(admin_url, "scale") as url:
        conn = await connect(url)
        try:
            await apply_migrations(conn, shared_migrations())
            say(f"1. generating {args.events:,} events, {args.users:,} users, {args.bots} bots")
            out["generate_seconds"] = round(await generate(conn, url, args), 1)
            say(f"   generation took {out['generate_seconds']} s")
            say("2. rolling up every finished day, and the hourly counts of the last 48 hours")
            started = time.perf_counter()
            days = await roll_up_finished_days(conn, ZONE)
            await catch_up_first_sights(conn)  # today's, as a bot's maintenance does
            out["rollup_seconds"] = round(time.perf_counter() - started, 1)
            out["rollup_days"] = len(days)
            say(f"   {len(days)} days in {out['rollup_seconds']} s")
            started = time.perf_counter()
            hours = await refresh_recent_hours(conn)
            out["hourly_seconds"] = round(time.perf_counter() - started, 1)
            out["hourly_hours"] = hours
            say(f"   hourly counts: {hours} hours in {out['hourly_seconds']} s")
            say("2b. the audience from the events (04-audience.sql's backfill)")
            out["audience"] = await fill_audience(conn)
            await conn.execute("VACUUM ANALYZE")
            say(f"3. queries, {args.repeat} times each")
            out["queries"] = await queries(conn, args.repeat)
            say("5. sizes")
            out["sizes"] = await sizes(conn)
        finally:
            await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--bots", type=int, default=10)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--jobs", type=int, default=1, help="connections generating at once")
    parser.add_argument(
        "--keep-indexes",
        action="store_true",
        help="generate with every index and the foreign key kept up per row (slower)",
    )
    parser.add_argument("--repeat", type=int, default=20, help="runs of each query")
    parser.add_argument("--ingest-rows", type=int, default=50_000)
    parser.add_argument("--ingest-rounds", type=int, default=4)
    parser.add_argument("--migrate-events", type=int, default=2_000_000, help="0: skip step 6")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args()
    started = time.perf_counter()
    out = asyncio.run(main_async(args))
    out["total_seconds"] = round(time.perf_counter() - started, 1)
    say(f"done in {out['total_seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
