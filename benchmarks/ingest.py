"""Analytics ingest: the seed's per-row INSERT against the template's batched Analytics path."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import asyncpg

from benchmarks.config import FIRST_USER_ID, SEED_EVENT, Config
from benchmarks.rendered_bot import RenderedBot, fetchval
from benchmarks.results import IngestRun, Results, progress


async def ingest_per_row(url: str, rows: int, user_ids: list[int]) -> float:
    """The seed's way: a pool acquire and one INSERT per event."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=5)
    try:
        started = time.perf_counter()
        for i in range(rows):
            async with pool.acquire() as conn:
                await conn.execute(SEED_EVENT, user_ids[i % len(user_ids)], "ingest per-row")
        return time.perf_counter() - started
    finally:
        await pool.close()


async def ingest_batched(rendered: RenderedBot, url: str, rows: int, user_ids: list[int]) -> float:
    """The template's way: Analytics.track_event into the buffer, then flush() (batches, COPY)."""
    db = rendered.db.Database(url, migrations=rendered.migrations.shared_migrations())
    await db.start()
    try:
        if not db.available:
            raise RuntimeError(f"Database not available for the ingest benchmark ({url})")
        analytics = rendered.analytics.Analytics(db, "ingest batched", buffer_size=rows)
        started = time.perf_counter()
        for i in range(rows):
            await analytics.track_event(user_ids[i % len(user_ids)], "user_start")
        written = int(await analytics.flush())
        elapsed = time.perf_counter() - started
        if written != rows or analytics.dropped:
            raise RuntimeError(f"batched ingest wrote {written}/{rows} ({analytics.dropped} lost)")
        await analytics.close()
        return elapsed
    finally:
        await db.close()


async def ingest(rendered: RenderedBot, admin_url: str, config: Config, res: Results) -> None:
    async with rendered.postgres.temporary_database(
        admin_url, prefix="bench_ingest", migrated=True
    ) as url:
        user_ids = [FIRST_USER_ID + k for k in range(config.users)]
        conn = await asyncpg.connect(url, timeout=10)
        try:
            await conn.executemany(
                "INSERT INTO shared.users (telegram_id, first_name) VALUES ($1, $2)",
                [(user_id, "User") for user_id in user_ids],
            )
        finally:
            await conn.close()
        ways: dict[str, Callable[[], Any]] = {
            "per-row": lambda: ingest_per_row(url, config.ingest_rows, user_ids),
            "batched": lambda: ingest_batched(rendered, url, config.ingest_rows, user_ids),
        }
        for round_no in range(config.ingest_rounds):
            for way, run in ways.items():
                await rendered.postgres.admin(url, "TRUNCATE shared.analytics_events")
                seconds = float(await run())
                stored = int(await fetchval(url, "SELECT count(*) FROM shared.analytics_events"))
                if stored != config.ingest_rows:
                    res.problems.append(
                        f"ingest {way} round {round_no + 1}: {stored}/{config.ingest_rows} rows"
                    )
                res.ingest_runs.append(
                    IngestRun(
                        way, round_no + 1, config.ingest_rows, seconds, config.ingest_rows / seconds
                    )
                )
                progress(
                    f"ingest round {round_no + 1}/{config.ingest_rounds} {way:>8}:"
                    f" {config.ingest_rows / seconds:9.0f} rows/s"
                )
