"""The audience with a real bot process, PostgreSQL and the fake Bot API over HTTP: the bot asks
Telegram for ``my_chat_member``, a user blocking and unblocking it flips their row, a 403 to a
reply marks the user, and the digest (``python -m ecosystem_shared.digest --preview``, another
process) counts them."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytz

from ecosystem_shared.testing.fake_bot_api import FakeBotAPI
from ecosystem_shared.testing.telegram_fixtures import StartBot
from ecosystem_shared.testing.waiting import fetch, wait_for_rows, wait_until
from ecosystem_shared.texts import shared_texts

pytestmark = pytest.mark.slow  # a bot process and a preview process

ZONE = "UTC"
FAST: dict[str, Any] = {
    "RATE_LIMIT_SECONDS": "0",
    "ANALYTICS_FLUSH_SECONDS": "0.1",
    "DIGEST_TIMEZONE": ZONE,
    "LANGUAGE": "en",
}
BLOCKED = "SELECT * FROM shared.bot_audience WHERE telegram_id = $1 AND blocked_at IS NOT NULL"
REACHABLE = "SELECT * FROM shared.bot_audience WHERE telegram_id = $1 AND blocked_at IS NULL"


async def preview(database_url: str, rootdir: Path) -> str:
    """The digest the bots would send tomorrow: it covers today (UTC)."""
    tomorrow = datetime.now(UTC).astimezone(pytz.timezone(ZONE)).date() + timedelta(days=1)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ecosystem_shared.digest",
        "--preview",
        "--day",
        tomorrow.isoformat(),
        "--language",
        "en",
        "--timezone",
        ZONE,
        env={**os.environ, "DATABASE_URL": database_url},
        cwd=rootdir,  # where the bot's packages are
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, output.decode()
    return output.decode()


async def start_and_wait(fake_api: FakeBotAPI, user_id: int) -> None:
    fake_api.push_message("/start", user_id=user_id)
    await fake_api.wait_for_call("sendMessage", chat_id=user_id, timeout=30)


async def test_blocks_and_unblocks_reach_the_audience_and_the_digest(
    fake_api: FakeBotAPI,
    bot_process_factory: StartBot,
    database_url: str,
    pytestconfig: pytest.Config,
) -> None:
    bot = await bot_process_factory(DATABASE_URL=database_url, **FAST)
    assert "my_chat_member" in fake_api.allowed_updates  # asked for in getUpdates
    for user in (601, 602, 603):
        await start_and_wait(fake_api, user)
    await wait_for_rows(database_url, REACHABLE, 603)

    fake_api.block(601, notify=True)  # the user blocks the bot: Telegram tells it
    await wait_for_rows(database_url, BLOCKED, 601)
    fake_api.block(602)  # blocked without the bot hearing of it...
    fake_api.push_message("/help", user_id=602)  # ...seen when the reply is refused
    await fake_api.wait_for_call("sendMessage", chat_id=602, timeout=30)
    await wait_for_rows(database_url, BLOCKED, 602)

    audience = shared_texts("en").digest_audience
    digest = await preview(database_url, pytestconfig.rootpath)
    assert audience.format(reachable=1, blocked=2) in digest, digest

    fake_api.unblock(601, notify=True)  # back: "member"
    await wait_for_rows(database_url, REACHABLE, 601)
    digest = await preview(database_url, pytestconfig.rootpath)
    assert audience.format(reachable=2, blocked=1) in digest, digest
    assert "Unhandled error" not in bot.output and "Traceback" not in bot.output
    errors = await fetch(
        database_url, "SELECT * FROM shared.analytics_events WHERE event_type = 'error'"
    )
    assert errors == []  # a blocked user is not the bot's error


async def test_marks_buffered_through_a_stop_are_written_at_exit(
    fake_api: FakeBotAPI, bot_process_factory: StartBot, database_url: str
) -> None:
    """SIGTERM right after the update: the buffered mark is written by the shutdown flush."""
    env = {**FAST, "ANALYTICS_FLUSH_SECONDS": "3600"}
    bot = await bot_process_factory(DATABASE_URL=database_url, **env)
    polls = fake_api.poll_count
    fake_api.push_my_chat_member(611, "kicked")

    async def taken() -> bool:  # confirmed by the next getUpdates
        return fake_api.pending == 0 and fake_api.poll_count > polls + 1

    await wait_until(taken, timeout=30, what="the update taken")
    await asyncio.sleep(0.5)  # handled by now: a buffered mark, nothing more
    assert await fetch(database_url, BLOCKED, 611) == []  # still buffered
    await bot.stop()
    rows = await fetch(database_url, BLOCKED, 611)
    assert len(rows) == 1
