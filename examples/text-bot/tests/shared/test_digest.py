"""The daily digest is sent exactly once per day across processes (real PostgreSQL)."""

import asyncio
from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta

import asyncpg
import pytest
import pytz
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from ecosystem_shared.analytics import Analytics, DailyStats
from ecosystem_shared.db import Database
from ecosystem_shared.digest import (
    DIGEST_JOB_ID,
    MISFIRE_GRACE,
    schedule_digest,
    send_digest_once,
)
from ecosystem_shared.migrations import shared_migrations

DAY = date(2025, 3, 1)


class RecordingNotifier:
    def __init__(self, result: bool | Exception = True, delay: float = 0.0) -> None:
        self.result = result
        self.delay = delay
        self.calls: list[DailyStats] = []

    async def daily_digest(self, stats: DailyStats) -> bool:
        self.calls.append(stats)
        await asyncio.sleep(self.delay)
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


class Process:
    """What one bot process has: its own pool and analytics."""

    def __init__(self, url: str, name: str) -> None:
        self.db = Database(url, migrations=shared_migrations())
        self.analytics = Analytics(self.db, name)
        self.name = name

    async def send(self, notifier: RecordingNotifier, day: date = DAY) -> bool:
        return await send_digest_once(
            self.db, self.analytics, notifier, day=day, bot_name=self.name
        )


@pytest.fixture
async def processes(database_url: str) -> AsyncIterator[list[Process]]:
    procs = [Process(database_url, f"Bot {i}") for i in range(3)]
    for proc in procs:
        await proc.db.start()
    yield procs
    for proc in procs:
        await proc.analytics.close()
        await proc.db.close()


async def runs(url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch("SELECT * FROM shared.digest_runs ORDER BY run_date"))
    finally:
        await conn.close()


async def test_three_processes_send_exactly_once(
    processes: list[Process], database_url: str
) -> None:
    await processes[1].analytics.track_user_start(10, "u", "U", None, None)
    notifiers = [RecordingNotifier(delay=0.2) for _ in processes]
    results = await asyncio.gather(*(p.send(n) for p, n in zip(processes, notifiers, strict=True)))
    assert sorted(results) == [False, False, True]
    calls = [call for n in notifiers for call in n.calls]
    assert len(calls) == 1
    assert calls[0].new_users == 1  # ecosystem-wide stats, other processes' rows included
    [row] = await runs(database_url)
    assert row["job"] == "daily_digest" and row["run_date"] == DAY
    assert row["sent_at"] is not None
    assert row["bot_name"] == processes[results.index(True)].name
    # Later the same day: nobody sends again; the next day is a new run.
    assert await processes[0].send(notifiers[0]) is False
    assert await processes[2].send(notifiers[2], DAY + timedelta(days=1)) is True


@pytest.mark.parametrize("failure", [False, RuntimeError("telegram down")])
async def test_failure_releases_the_claim(
    processes: list[Process], database_url: str, failure: bool | Exception
) -> None:
    failing = RecordingNotifier(result=failure)
    assert await processes[0].send(failing) is False
    assert len(failing.calls) == 1
    assert await runs(database_url) == []  # released: another run may retry
    working = RecordingNotifier()
    assert await processes[1].send(working) is True
    assert len(working.calls) == 1


async def test_stale_claim_of_a_dead_process_is_taken_over(
    processes: list[Process], database_url: str
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "INSERT INTO shared.digest_runs (job, run_date, bot_name, claimed_at)"
            " VALUES ('daily_digest', $1, 'Dead Bot', now() - interval '2 hours')",
            DAY,
        )
        await conn.execute(
            "INSERT INTO shared.digest_runs (job, run_date, bot_name)"
            " VALUES ('daily_digest', $1, 'Busy Bot')",
            DAY + timedelta(days=1),
        )
    finally:
        await conn.close()
    notifier = RecordingNotifier()
    assert await processes[0].send(notifier) is True
    # A fresh claim (someone is sending right now) is respected.
    assert await processes[0].send(notifier, DAY + timedelta(days=1)) is False
    assert len(notifier.calls) == 1


async def test_no_database_sends_nothing() -> None:
    db = Database(None)
    await db.start()
    notifier = RecordingNotifier()
    sent = await send_digest_once(db, Analytics(db, "x"), notifier, day=DAY, bot_name="x")
    assert sent is False and notifier.calls == []


async def _noop() -> None:
    return None


@pytest.mark.parametrize(
    ("now", "catch_up"),
    [
        (datetime(2025, 3, 1, 8, 59), False),  # before the time: the cron job will run
        (datetime(2025, 3, 1, 9, 20), True),  # missed by minutes: run soon
        (datetime(2025, 3, 1, 9) + MISFIRE_GRACE + timedelta(minutes=1), False),  # too late
    ],
)
def test_schedule_digest(now: datetime, catch_up: bool) -> None:
    tz = pytz.timezone("Europe/Moscow")
    scheduler = AsyncIOScheduler(timezone=tz)
    schedule_digest(
        scheduler, at=time(9, 0), timezone="Europe/Moscow", callback=_noop, now=tz.localize(now)
    )
    jobs = scheduler.get_jobs()
    cron = next(job for job in jobs if job.id == DIGEST_JOB_ID)
    assert cron.misfire_grace_time >= 3 * 3600
    assert cron.coalesce is True
    assert "hour='9'" in str(cron.trigger) and "minute='0'" in str(cron.trigger)
    assert str(cron.trigger.timezone) == "Europe/Moscow"
    catch_ups = [job for job in jobs if job.id != DIGEST_JOB_ID]
    assert len(catch_ups) == int(catch_up)
    if catch_up:
        run_date = catch_ups[0].trigger.run_date
        assert tz.localize(now) < run_date <= tz.localize(now) + timedelta(minutes=1)
