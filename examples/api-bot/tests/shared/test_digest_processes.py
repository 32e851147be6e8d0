"""The daily digest with real bot processes: one message per day, however many bots run.

Three ``python -m <bot>`` processes share a database and an analytics channel (each has its own
fake Bot API: one poller per token) and are started after their ``DIGEST_TIME`` has passed, so
nobody waits for a cron minute: each catches up ``CATCH_UP_DELAY`` after its start, all three
run the digest job within seconds of each other, exactly one sends: the 14-day chart of the
bots' activity (seeded in the database) as one photo captioned with the digest text, while the
bot's resident memory grows by less than 5 MiB (matplotlib runs in a subprocess). The cron path
itself (the trigger firing at ``DIGEST_TIME`` in ``DIGEST_TIMEZONE``) is driven with a fake
clock in ``test_digest.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from ecosystem_shared.testing.waiting import fetch, wait_until
from ecosystem_shared.texts import shared_texts

pytestmark = pytest.mark.slow  # three bot processes and CATCH_UP_DELAY (15 s)

CHANNEL = -1001234567890
JOB = "daily_digest"
# Odd UTC offsets: a bot reading DIGEST_TIME in another zone would not catch up.
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


async def test_digest_sent_once_by_three_late_bots(
    database_url: str, bot_module: str, request: pytest.FixtureRequest
) -> None:
    zone = pick_zone()
    passed = datetime.now(zone).replace(second=0, microsecond=0) - timedelta(minutes=2)
    day = f"{passed:%Y-%m-%d}"
    bots: list[BotProcess] = []
    async with contextlib.AsyncExitStack() as stack:
        apis = [await stack.enter_async_context(FakeBotAPI()) for _ in range(3)]
        for number, api in enumerate(apis, start=1):
            env = {
                "ANALYTICS_CHANNEL_ID": str(CHANNEL),
                "BOT_NAME": f"Digest Bot {number}",
                "DATABASE_URL": database_url,
                "DIGEST_TIME": f"{passed:%H:%M}",
                "DIGEST_TIMEZONE": str(zone),
                "LANGUAGE": "en",
                "LOG_LEVEL": "INFO",
            }
            rootdir = request.config.rootpath
            bots.append(BotProcess(bot_module, rootdir, api, env, start_timeout=START_TIMEOUT))
        try:
            # The per-test database is a copy of a migrated template: the tables exist already.
            await seed_activity(database_url, zone)
            await asyncio.gather(*(process.start() for process in bots))
            rss_before = [rss_kib(p.pid) for p in bots]  # before CATCH_UP_DELAY has passed
            outcomes = [await wait_for_outcome(p, day, timeout=120) for p in bots]
            rss_after = [rss_kib(p.pid) for p in bots]
        finally:
            running = [p for p in bots if p.pid is not None]
            codes = await asyncio.gather(*(p.stop() for p in running))
        assert codes == [0] * len(bots), [p.output[-2000:] for p in running]

    assert all("catching up" in p.output for p in bots), [p.output[-2000:] for p in bots]
    assert sorted(outcomes) == [
        "already claimed by another process",
        "already claimed by another process",
        "sent",
    ], outcomes
    sender = outcomes.index("sent")
    sent = [digests(api) for api in apis]
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
