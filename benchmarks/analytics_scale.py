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
import json
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/analytics_scale.py`: `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.analytics_scale_data import fill_audience, generate
from benchmarks.analytics_scale_queries import queries, sizes
from benchmarks.analytics_scale_template import (
    ZONE,
    apply_migrations,
    catch_up_first_sights,
    connect,
    database,
    postgres,
    refresh_recent_hours,
    roll_up_finished_days,
    say,
    shared_migrations,
)
from benchmarks.analytics_scale_writes import ingest, switch


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
