"""The daily digest with real bot processes: one message per day, however many bots run.

Three ``python -m <bot>`` processes share a database and an analytics channel (each has its own
fake Bot API: one poller per token) and are started with ``DIGEST_TIME`` set to a minute just
ahead: at that minute all three run the digest job, exactly one sends: the 14-day chart of the
bots' activity (seeded in the database) as one photo captioned with the digest text, while the
bot's resident memory grows by less than 5 MiB (matplotlib runs in a subprocess). Meanwhile a
fourth bot, alone on another database, is started after its digest time has passed: it catches
up (after ``CATCH_UP_DELAY``) and sends the missed digest once, as text only (no data to draw).
Both paths run concurrently to keep the test's wall time near one wait for the next minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from datetime import time as dt_time
from pathlib import Path

import asyncpg
import pytest
import pytz

from ecosystem_shared.stats import chart_days
from ecosystem_shared.testing.activity import insert_activity, synthetic_series
from ecosystem_shared.testing.bot_process import BotProcess
from ecosystem_shared.testing.fake_bot_api import Call, FakeBotAPI
from ecosystem_shared.testing.postgres import with_database
from ecosystem_shared.testing.waiting import fetch, wait_until
from ecosystem_shared.texts import shared_texts

CHANNEL = -1001234567890
JOB = "daily_digest"
# Odd UTC offsets: a bot reading DIGEST_TIME in another zone would not send within the test.
ZONES = ("Asia/Kathmandu", "America/St_Johns", "Australia/Eucla")
START_TIMEOUT = 180.0  # importing aiogram takes seconds, more on a busy machine
TITLE = shared_texts("en").digest_title.partition("{")[0]
TOTAL = shared_texts("en").digest_total.partition("{")[0]
SEEDED = ("Picture Bot", "CRM Bot", "Текстовый бот")  # activity of the last 14 days
RSS_GROWTH_LIMIT = 5 * 1024  # KiB


def pick_zone() -> pytz.BaseTzInfo:
    """A zone whose local time is far from midnight (the digest day must not change)."""
    for name in ZONES:
        zone = pytz.timezone(name)
        local = datetime.now(zone)
        if (0, 10) <= (local.hour, local.minute) <= (23, 40):
            return zone
    raise AssertionError("all zones are near midnight")  # they are hours apart: unreachable


def next_minute(moment: datetime) -> datetime:
    return (moment + timedelta(minutes=1)).replace(second=0, microsecond=0)


@contextlib.asynccontextmanager
async def another_database(postgres_url: str) -> AsyncIterator[str]:
    name = f"test_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(postgres_url, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield with_database(postgres_url, name)
    finally:
        conn = await asyncpg.connect(postgres_url, timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


def digests(api: FakeBotAPI) -> list[Call]:
    """Digest messages in the channel: the chart photo, or HTML text (new-user notices are
    plain text)."""
    return [
        call
        for call in api.calls(chat_id=CHANNEL)
        if call.error_code is None
        and (call.method == "sendPhoto" or call.params.get("parse_mode") == "HTML")
    ]


def rss_kib(pid: int | None) -> int:
    assert pid is not None
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


async def seed_activity(database_url: str, zone: pytz.BaseTzInfo) -> None:
    """Two weeks of activity of three bots, in the tables the digest and its chart read (the
    bots, up and running, have created them)."""
    days = chart_days(datetime.now(zone), str(zone))
    conn = await asyncpg.connect(database_url)
    try:
        # At 23:50: the last day's activity also falls in the digest's last 24 hours (the test
        # runs between 00:10 and 23:40 local time), so the caption names every bot.
        series = synthetic_series(SEEDED, days, scale=0.1)
        await insert_activity(conn, series, days, str(zone), at=dt_time(23, 50))
    finally:
        await conn.close()


async def wait_for_outcome(bot: BotProcess, day: str, timeout: float) -> str:
    """The digest job's log line for ``day``: sent, or skipped because another bot sent it."""
    prefix = f"Digest {JOB} for {day} "

    async def outcome() -> str:
        for line in bot.output.splitlines():
            if prefix in line:
                return line.partition(prefix)[2]
        return ""

    return await wait_until(outcome, timeout=timeout, interval=0.2, what=f"{prefix!r} in the log")


async def runs(database_url: str) -> list[asyncpg.Record]:
    return await fetch(database_url, "SELECT * FROM shared.digest_runs")


async def test_digest_sent_once_by_three_bots_and_caught_up_by_a_late_one(
    database_url: str, postgres_url: str, bot_module: str, request: pytest.FixtureRequest
) -> None:
    zone = pick_zone()
    common = {
        "ANALYTICS_CHANNEL_ID": str(CHANNEL),
        "DIGEST_TIMEZONE": str(zone),
        "LANGUAGE": "en",
        "LOG_LEVEL": "INFO",
    }
    bots: list[BotProcess] = []
    async with contextlib.AsyncExitStack() as stack:
        apis = [await stack.enter_async_context(FakeBotAPI()) for _ in range(4)]
        late_database = await stack.enter_async_context(another_database(postgres_url))

        def bot(api: FakeBotAPI, **env: str) -> BotProcess:
            process = BotProcess(
                bot_module, request.config.rootpath, api, common | env, start_timeout=START_TIMEOUT
            )
            bots.append(process)
            return process

        try:
            # The late bot: its digest time passed two minutes ago and nobody sent the digest.
            started = time.monotonic()
            passed = datetime.now(zone).replace(second=0, microsecond=0) - timedelta(minutes=2)
            late = bot(
                apis[0],
                BOT_NAME="Late Bot",
                DATABASE_URL=late_database,
                DIGEST_TIME=f"{passed:%H:%M}",
            )
            await late.start()
            # Room for three bots to start before the digest time (slower together: measured
            # 1.5-5 times one start on two busy cores).
            room = min(150.0, max(15.0, 4 * (time.monotonic() - started) + 5))
            due = zone.normalize(next_minute(datetime.now(zone) + timedelta(seconds=room)))
            trio = [
                bot(
                    api,
                    BOT_NAME=f"Digest Bot {number}",
                    DATABASE_URL=database_url,
                    DIGEST_TIME=f"{due:%H:%M}",
                )
                for number, api in enumerate(apis[1:], start=1)
            ]
            await asyncio.gather(*(process.start() for process in trio))
            await seed_activity(database_url, zone)

            # The catch-up path: sent once, CATCH_UP_DELAY after the late bot started.
            assert await wait_for_outcome(late, f"{passed:%Y-%m-%d}", timeout=120) == "sent"
            assert "catching up" in late.output

            # The cron path: at the digest time each bot runs the job, one sends.
            wait = (due - datetime.now(zone)).total_seconds()
            day = f"{due:%Y-%m-%d}"
            rss_before = [rss_kib(p.pid) for p in trio]
            outcomes = [await wait_for_outcome(p, day, timeout=wait + 90) for p in trio]
            rss_after = [rss_kib(p.pid) for p in trio]
        finally:
            running = [p for p in bots if p.pid is not None]
            codes = await asyncio.gather(*(p.stop() for p in running))
        assert codes == [0] * len(bots), [p.output[-2000:] for p in running]

        # At least two bots raced at the digest time (a third one that started too late on a
        # very busy machine caught up instead, and found the digest sent).
        on_time = [p for p in trio if "catching up" not in p.output]
        assert len(on_time) >= 2, f"bots not up {room:.0f} s after the late one; see their logs"
        assert sorted(outcomes) == [
            "already claimed by another process",
            "already claimed by another process",
            "sent",
        ], outcomes
        sender = outcomes.index("sent")
        sent = [digests(api) for api in apis[1:]]
        assert [len(calls) for calls in sent] == [int(i == sender) for i in range(3)]
        # One photo: the chart, captioned with the whole digest text.
        [photo] = sent[sender]
        assert photo.method == "sendPhoto" and photo.params["parse_mode"] == "HTML"
        caption = photo.params["caption"]
        assert caption.startswith(TITLE) and TOTAL in caption
        assert all(f"<b>{name}</b>" in caption for name in SEEDED), caption
        chart = photo.file("photo").data
        assert chart.startswith(b"\x89PNG") and int.from_bytes(chart[16:20], "big") == 1200
        growth = rss_after[sender] - rss_before[sender]
        print(f"RSS of the sending bot: {rss_before[sender]} -> {rss_after[sender]} KiB")
        assert growth < RSS_GROWTH_LIMIT, f"the digest grew the bot by {growth} KiB"
        [row] = await runs(database_url)
        assert (row["job"], f"{row['run_date']}") == (JOB, day)
        assert row["bot_name"] == f"Digest Bot {sender + 1}"
        assert row["sent_at"] is not None
        assert row["claimed_at"] >= due  # not early: DIGEST_TIME is read in DIGEST_TIMEZONE

        [late_digest] = digests(apis[0])
        assert late_digest.params["text"].startswith(TITLE)
        [late_row] = await runs(late_database)
        assert late_row["bot_name"] == "Late Bot" and late_row["sent_at"] is not None
