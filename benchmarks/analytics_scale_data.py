"""The scale benchmark's data: events generated with the seed's mix, loaded with the indexes
made afterwards, and the audience filled from them."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from benchmarks.analytics_scale_template import connect, say, shared_migrations

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


def kinds() -> list[str]:
    return [kind for kind, share in MIX for _ in range(share)]


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
