"""What every bot does for the shared analytics after it connected, and daily.

In order: tell the database which event types are this bot's main activity, finish the switch
to the partitioned events table (see :mod:`ecosystem_shared.partitions`; only one bot copies),
create the coming months' partitions, roll up the finished days (see
:mod:`ecosystem_shared.rollups`), recount the last two days' hourly event counts (see
:mod:`ecosystem_shared.hourly`), sum the audience's count deltas into one row a bot
(:mod:`ecosystem_shared.audience`), and, with ``ANALYTICS_RETENTION_MONTHS`` set, drop expired
partitions (:mod:`ecosystem_shared.retention`; one bot a day, elected like the digest's sender).
Every step is idempotent and safe to run from all bots at once; failures are logged and the next
run (reconnect or the daily job) tries again. Runs in the background: the bot answers meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
import pytz

from ecosystem_shared.analytics_store import RETRYABLE
from ecosystem_shared.audience import compact_counts
from ecosystem_shared.db import Database
from ecosystem_shared.digest import claim_job, finish_job
from ecosystem_shared.hourly import refresh_recent_hours
from ecosystem_shared.partitions import finish_partitioning, maintain_partitions
from ecosystem_shared.retention import RETENTION_JOB, drop_expired_partitions
from ecosystem_shared.rollups import catch_up_first_sights, roll_up_finished_days

logger = logging.getLogger(__name__)

MAINTENANCE_JOB_ID = "analytics-maintenance"

_MAIN_EVENTS = """
INSERT INTO shared.analytics_bots (bot_name, main_events) VALUES ($1, $2)
ON CONFLICT (bot_name) DO UPDATE SET main_events = EXCLUDED.main_events, updated_at = now()
    WHERE shared.analytics_bots.main_events IS DISTINCT FROM EXCLUDED.main_events
"""


class AnalyticsMaintenance:
    def __init__(
        self,
        db: Database,
        *,
        bot_name: str,
        timezone: str,
        main_events: Sequence[str] = (),
        retention_months: int | None = None,
    ) -> None:
        self.db = db
        self.bot_name = bot_name
        self.timezone = timezone
        self.main_events = list(main_events)
        self.retention_months = retention_months
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run after every (re)connection of the database, in the background."""
        if self.db.enabled:
            self.db.on_connected.append(self._on_connected)

    async def _on_connected(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self.run(), name="analytics-maintenance")

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.db.on_connected.remove(self._on_connected)
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run(self, now: datetime | None = None) -> None:
        """One pass of every step; never raises (bar cancellation)."""
        try:
            async with self.db.acquire() as conn:
                await conn.execute(_MAIN_EVENTS, self.bot_name, self.main_events)
                await finish_partitioning(conn)
                await maintain_partitions(conn)
                await roll_up_finished_days(conn, self.timezone, now=now)
                await catch_up_first_sights(conn)
                await refresh_recent_hours(conn, now=now)
                await compact_counts(conn)
                if self.retention_months is not None:
                    await self._retention(conn, self.retention_months, now)
        except (*RETRYABLE, asyncpg.PostgresError) as error:
            logger.warning("Analytics maintenance stopped, retried later: %r", error)
        except Exception:
            logger.exception("Analytics maintenance failed")

    async def _retention(self, conn: asyncpg.Connection, months: int, now: datetime | None) -> None:
        today = (now or datetime.now(UTC)).astimezone(pytz.timezone(self.timezone)).date()
        if not await claim_job(conn, RETENTION_JOB, today, self.bot_name):
            return  # another bot does today's
        done = False
        try:
            await drop_expired_partitions(conn, months, bot_name=self.bot_name, now=now)
            done = True
        finally:
            await finish_job(conn, RETENTION_JOB, today, done=done)
