"""The daily digest: every bot schedules it, exactly one sends it.

Each bot process runs its own APScheduler (sharing a job store between processes is not
supported), so the bots agree through the database: the first to insert the ``(job, day)`` row
of ``shared.digest_runs`` sends the ecosystem-wide digest, the others find the row and skip.
A failed send deletes the claim so a later run may retry; a claim left by a process that died
while sending is taken over after :data:`STALE_CLAIM`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from typing import TYPE_CHECKING, Protocol

import asyncpg
import pytz
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from ecosystem_shared.analytics_store import RETRYABLE
from ecosystem_shared.db import Database
from ecosystem_shared.sanitize import NAME_LIMIT, optional_text

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from ecosystem_shared.analytics import Analytics
    from ecosystem_shared.stats import DailyStats

logger = logging.getLogger(__name__)

# A bot (re)started this long after the digest time still sends it if nobody did.
MISFIRE_GRACE = timedelta(hours=6)
CATCH_UP_DELAY = timedelta(seconds=15)  # lets the database connect first
STALE_CLAIM = timedelta(minutes=30)
DIGEST_JOB_ID = "daily-digest"

_CLAIM = """
INSERT INTO shared.digest_runs AS r (job, run_date, bot_name) VALUES ($1, $2, $3)
ON CONFLICT (job, run_date) DO UPDATE
    SET claimed_at = now(), bot_name = EXCLUDED.bot_name
    WHERE r.sent_at IS NULL AND r.claimed_at < now() - $4::interval
RETURNING true
"""
_RELEASE = "DELETE FROM shared.digest_runs WHERE job = $1 AND run_date = $2 AND sent_at IS NULL"
_SENT = "UPDATE shared.digest_runs SET sent_at = now() WHERE job = $1 AND run_date = $2"


class DigestNotifier(Protocol):
    async def daily_digest(self, stats: DailyStats) -> bool: ...


_LAST_SENT = (
    "SELECT extract(epoch FROM max(sent_at))::float8 FROM shared.digest_runs WHERE job = $1"
)


async def last_digest_sent(db: Database, job: str = "daily_digest") -> float | None:
    """Unix time the digest ``job`` was last sent by any bot; None if never or unreadable."""
    try:
        async with db.acquire() as conn:
            value = await conn.fetchval(_LAST_SENT, job)
    except (*RETRYABLE, asyncpg.PostgresError) as error:
        logger.debug("Last digest time not read: %s", error)
        return None
    return float(value) if value is not None else None


async def claim_job(conn: asyncpg.Connection, job: str, day: date, bot_name: str | None) -> bool:
    """True when this process won ``(job, day)``: the first to claim it, or taking over a claim
    left unsent for :data:`STALE_CLAIM`. Also elects the bot that applies analytics retention."""
    bot = optional_text(bot_name, NAME_LIMIT)
    return bool(await conn.fetchval(_CLAIM, job, day, bot, STALE_CLAIM))


async def finish_job(conn: asyncpg.Connection, job: str, day: date, *, done: bool) -> None:
    """Mark ``(job, day)`` done, or release the claim so that a later run retries."""
    await conn.execute(_SENT if done else _RELEASE, job, day)


async def send_digest_once(
    db: Database,
    analytics: Analytics,
    notifier: DigestNotifier,
    *,
    day: date,
    job: str = "daily_digest",
    bot_name: str | None = None,
    timezone: str | None = None,
) -> bool:
    """Send the digest of ``day`` unless some process already did; True if this call sent it.

    With ``timezone`` the digest covers the local day before ``day`` (the run date), read from
    the daily rollups; without it, the 24 hours before now."""
    try:
        async with db.acquire() as conn:
            claimed = await claim_job(conn, job, day, bot_name)
    except (*RETRYABLE, asyncpg.PostgresError) as error:
        logger.warning("Digest %s for %s not claimed: %s", job, day, error)
        return False
    if not claimed:
        logger.info("Digest %s for %s already claimed by another process", job, day)
        return False
    try:
        if timezone is None:
            stats = await analytics.get_daily_stats(None)
        else:
            stats = await analytics.get_day_stats(day - timedelta(days=1), timezone)
        sent = await notifier.daily_digest(stats)
    except Exception:
        logger.exception("Digest %s for %s failed", job, day)
        sent = False
    try:
        async with db.acquire() as conn:
            await finish_job(conn, job, day, done=sent)
    except (*RETRYABLE, asyncpg.PostgresError) as error:
        # Sent but not marked: the claim still blocks duplicates. Not sent and not released:
        # the claim goes stale and a later run takes it over.
        logger.warning("Digest %s for %s: claim not updated: %s", job, day, error)
    if sent:
        logger.info("Digest %s for %s sent", job, day)
    else:
        logger.warning("Digest %s for %s not sent; claim released for a retry", job, day)
    return sent


def schedule_digest(
    scheduler: AsyncIOScheduler,
    *,
    at: dt_time,
    timezone: str,
    callback: Callable[[], Awaitable[None]],
    now: datetime | None = None,
) -> None:
    """Run ``callback`` daily at ``at`` (in ``timezone``), and soon if that time passed less
    than :data:`MISFIRE_GRACE` ago (the claim in ``shared.digest_runs`` stops duplicates)."""
    tz = pytz.timezone(timezone)
    grace = int(MISFIRE_GRACE.total_seconds())
    scheduler.add_job(
        callback,
        CronTrigger(hour=at.hour, minute=at.minute, second=at.second, timezone=tz),
        id=DIGEST_JOB_ID,
        replace_existing=True,
        misfire_grace_time=grace,
        coalesce=True,
        max_instances=1,
    )
    current = (now or datetime.now(tz)).astimezone(tz)
    due = tz.localize(datetime.combine(current.date(), at.replace(tzinfo=None)))
    if due <= current < due + MISFIRE_GRACE:
        logger.info("Digest time %s passed %s ago: catching up", at, current - due)
        scheduler.add_job(
            callback,
            DateTrigger(run_date=current + CATCH_UP_DELAY, timezone=tz),
            id=f"{DIGEST_JOB_ID}-catch-up",
            replace_existing=True,
            misfire_grace_time=grace,
        )


if __name__ == "__main__":
    from ecosystem_shared.digest_preview import main

    raise SystemExit(main())
