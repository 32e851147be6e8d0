"""The daily digest with real bot processes: one message per day, however many bots run.

Three ``python -m <bot>`` processes share a database and an analytics channel (each has its own
fake Bot API: one poller per token) and are started after their ``DIGEST_TIME`` has passed, so
nobody waits for a cron minute: each catches up ``CATCH_UP_DELAY`` after its start, all three
run the digest job within seconds of each other, exactly one sends. The cron path itself (the
trigger firing at ``DIGEST_TIME`` in ``DIGEST_TIMEZONE``) is driven with a fake clock in
``test_digest.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

import asyncpg
import pytest
import pytz

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


def pick_zone() -> pytz.BaseTzInfo:
    """A zone whose local time is far from midnight (the digest day must not change)."""
    for name in ZONES:
        zone = pytz.timezone(name)
        local = datetime.now(zone)
        if (0, 10) <= (local.hour, local.minute) <= (23, 40):
            return zone
    raise AssertionError("all zones are near midnight")  # they are hours apart: unreachable


def digests(api: FakeBotAPI) -> list[Call]:
    """Digest messages in the channel (new-user notices are plain text, digests HTML)."""
    return [
        call
        for call in api.calls("sendMessage", chat_id=CHANNEL)
        if call.params.get("parse_mode") == "HTML" and call.error_code is None
    ]


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
            await asyncio.gather(*(process.start() for process in bots))
            outcomes = [await wait_for_outcome(p, day, timeout=120) for p in bots]
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
    assert sent[sender][0].params["text"].startswith(TITLE)
    [row] = await runs(database_url)
    assert (row["job"], f"{row['run_date']}") == (JOB, day)
    assert row["bot_name"] == f"Digest Bot {sender + 1}"
    assert row["sent_at"] is not None
