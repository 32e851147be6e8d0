"""The daily digest is sent exactly once per day across processes (real PostgreSQL)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta, tzinfo

import asyncpg
import pytest
import pytz
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from ecosystem_shared.analytics import Analytics, DailyStats
from ecosystem_shared.analytics_maintenance import MAINTENANCE_JOB_ID
from ecosystem_shared.config import SharedSettings
from ecosystem_shared.db import Database
from ecosystem_shared.digest import (
    CATCH_UP_DELAY,
    DIGEST_JOB_ID,
    MISFIRE_GRACE,
    schedule_digest,
    send_digest_once,
)
from ecosystem_shared.migrations import shared_migrations
from ecosystem_shared.runtime import Services, build_scheduler, build_services
from ecosystem_shared.telegram import build_bot
from ecosystem_shared.testing.fake_bot_api import FakeBotAPI
from ecosystem_shared.texts import shared_texts

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
    catch_ups = [job for job in jobs if job.id not in (DIGEST_JOB_ID, MAINTENANCE_JOB_ID)]
    assert len(catch_ups) == int(catch_up)
    if catch_up:
        run_date = catch_ups[0].trigger.run_date
        assert tz.localize(now) < run_date <= tz.localize(now) + timedelta(minutes=1)


# ------------------------------------------- the bot's own schedule, with time driven by the test

CHANNEL = -1001234567890
KATHMANDU = pytz.timezone("Asia/Kathmandu")  # UTC+05:45: a digest read in the wrong zone misses


class FakeClock:
    """``datetime.now`` for :func:`build_scheduler`; the test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self, tz: tzinfo | None = None) -> datetime:
        return self.now.astimezone(tz)


@contextlib.asynccontextmanager
async def bot_services(
    api: FakeBotAPI, database_url: str, names: list[str]
) -> AsyncIterator[list[Services]]:
    """One :class:`Services` per bot name, as many bot processes would build them."""
    async with contextlib.AsyncExitStack() as stack:
        services = []
        for name in names:
            settings = SharedSettings(
                _env_file=None,  # not the developer's .env
                BOT_TOKEN=api.token,
                BOT_NAME=name,
                LANGUAGE="en",
                DATABASE_URL=database_url,
                TELEGRAM_API_BASE_URL=api.base_url,
                ANALYTICS_CHANNEL_ID=CHANNEL,
                DIGEST_TIME=time(0, 0),
                DIGEST_TIMEZONE=str(KATHMANDU),
            )
            bot = build_bot(settings)
            stack.push_async_callback(bot.session.close)
            built = build_services(settings, bot)
            await built.db.start()
            stack.push_async_callback(built.db.close)
            services.append(built)
        yield services


def channel_digests(api: FakeBotAPI) -> list[str]:
    return [
        str(call.params["text"])
        for call in api.calls("sendMessage", chat_id=CHANNEL)
        if call.params.get("parse_mode") == "HTML"
    ]


async def test_three_bots_at_the_digest_time_send_once(
    fake_api: FakeBotAPI, database_url: str
) -> None:
    """The bots' own schedules (DIGEST_TIME 00:00 in DIGEST_TIMEZONE) with the clock driven by
    the test: the trigger fires at local midnight, every bot runs the job, one digest is sent,
    for the local day that begins (the UTC date is still the previous one)."""
    clock = FakeClock(KATHMANDU.localize(datetime(2025, 3, 1, 23, 59)))
    names = [f"Digest Bot {i}" for i in range(3)]
    async with bot_services(fake_api, database_url, names) as services:
        jobs = [build_scheduler(s, clock).get_job(DIGEST_JOB_ID) for s in services]
        due = KATHMANDU.localize(datetime(2025, 3, 2, 0, 0))
        for job in jobs:
            assert job is not None
            assert job.trigger.get_next_fire_time(None, clock.now) == due
        assert due.astimezone(pytz.utc).date() == date(2025, 3, 1)
        clock.now = due  # what the scheduler's timer would wait for
        await asyncio.gather(*(job.func() for job in jobs if job is not None))
    [digest] = channel_digests(fake_api)
    assert digest.startswith(shared_texts("en").digest_title.partition("{")[0])
    [row] = await runs(database_url)
    assert row["run_date"] == date(2025, 3, 2) and row["sent_at"] is not None
    assert row["bot_name"] in names


async def test_bot_started_after_the_digest_time_catches_up(
    fake_api: FakeBotAPI, database_url: str
) -> None:
    started = KATHMANDU.localize(datetime(2025, 3, 2, 0, 2))  # two minutes late
    clock = FakeClock(started)
    async with bot_services(fake_api, database_url, ["Late Bot"]) as [services]:
        scheduler = build_scheduler(services, clock)
        [catch_up] = [
            job for job in scheduler.get_jobs() if job.id not in (DIGEST_JOB_ID, MAINTENANCE_JOB_ID)
        ]
        assert catch_up.trigger.run_date == started + CATCH_UP_DELAY
        clock.now = started + CATCH_UP_DELAY
        await catch_up.func()
        await catch_up.func()  # a second run the same day (a restart) sends nothing
    assert len(channel_digests(fake_api)) == 1
    [row] = await runs(database_url)
    assert (row["run_date"], row["bot_name"]) == (date(2025, 3, 2), "Late Bot")


async def test_no_channel_schedules_no_digest(fake_api: FakeBotAPI, database_url: str) -> None:
    async with bot_services(fake_api, database_url, ["Quiet Bot"]) as [services]:
        services.settings.ANALYTICS_CHANNEL_ID = None
        assert [job.id for job in build_scheduler(services).get_jobs()] == [MAINTENANCE_JOB_ID]
