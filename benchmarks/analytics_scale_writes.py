"""The scale benchmark's writes: the analytics writer's ingest into each table, and the
switch of a plain table to the partitioned one while a writer keeps adding events."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import asyncpg

from benchmarks.analytics_scale_data import generate
from benchmarks.analytics_scale_template import (
    PLAIN_INGEST,
    PLAIN_SCHEMA,
    Analytics,
    Database,
    apply_migrations,
    connect,
    database,
    finish_partitioning,
    say,
    shared_migrations,
    store_module,
)


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
