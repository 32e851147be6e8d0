"""Three bot processes started at the same moment against one empty database.

Interpreters take seconds to start and never take exactly as long, so started side by side
they would reach the database one after another. Instead they are started against a database
that does not exist yet (each retries every 0.2 s) and the test creates it, empty, once all
three are polling: they connect and migrate within a fraction of a second of each other.
Each process has its own fake Bot API: one fake has one update queue (a second poller would
get Telegram's 409).
"""

import asyncio
import contextlib
import importlib
from pathlib import Path

import pytest

from ecosystem_shared.migrations import migration_name, shared_migrations
from ecosystem_shared.testing.bot_process import BotProcess
from ecosystem_shared.testing.fake_bot_api import FakeBotAPI
from ecosystem_shared.testing.postgres import (
    create_database,
    drop_database,
    new_database_name,
    with_database,
)
from ecosystem_shared.testing.waiting import fetch, wait_for_rows, wait_until

pytestmark = pytest.mark.slow  # three bot processes

TIMEOUT = 30.0  # generous: the machine may be busy; nothing waits this long when all is well
BOTS = 3


async def stop_if_started(bot: BotProcess) -> None:
    if bot.pid is not None:
        assert await bot.stop() == 0, bot.output[-2000:]


async def test_three_bots_migrate_one_empty_database_once(
    postgres_url: str, bot_module: str, request: pytest.FixtureRequest
) -> None:
    own_files: list[Path] = importlib.import_module(f"{bot_module}.settings").MIGRATIONS
    expected = sorted(migration_name(path) for path in [*shared_migrations(), *own_files])
    name = new_database_name()
    database_url = with_database(postgres_url, name)
    env = {
        "DATABASE_URL": database_url,
        "DB_RECONNECT_SECONDS": "0.2",
        "RATE_LIMIT_SECONDS": "0",
        "ANALYTICS_FLUSH_SECONDS": "0.1",
    }
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(drop_database, postgres_url, name)
        bots: list[BotProcess] = []
        for i in range(BOTS):
            api = await stack.enter_async_context(FakeBotAPI(token=f"{7001 + i}:TEST-token-{i}"))
            bot = BotProcess(
                bot_module,
                request.config.rootpath,
                api,
                env | {"BOT_NAME": f"Concurrent {i}"},
                start_timeout=90,  # three interpreters importing aiogram on a busy machine
            )
            stack.push_async_callback(stop_if_started, bot)
            bots.append(bot)
        started = await asyncio.gather(*(bot.start() for bot in bots), return_exceptions=True)
        errors = [result for result in started if isinstance(result, BaseException)]
        if errors:
            raise errors[0]

        await create_database(postgres_url, name)
        for i, bot in enumerate(bots):
            bot.api.push_message("/start", user_id=8001 + i)
        for i, bot in enumerate(bots):
            await bot.api.wait_for_call("sendMessage", TIMEOUT, chat_id=8001 + i)
        events = await wait_for_rows(
            database_url,
            "SELECT bot_name, telegram_id FROM shared.analytics_events"
            " WHERE event_type = 'user_start' ORDER BY telegram_id",
            count=BOTS,
            timeout=TIMEOUT,
        )
        assert [(row["bot_name"], row["telegram_id"]) for row in events] == [
            (f"Concurrent {i}", 8001 + i) for i in range(BOTS)
        ]
        rows = await fetch(database_url, "SELECT name FROM shared.schema_migrations ORDER BY name")
        assert [row["name"] for row in rows] == expected

        async def connected() -> list[str]:
            return [bot.output for bot in bots if "Connected to the database" in bot.output]

        await wait_until(connected, lambda done: len(done) == BOTS, timeout=TIMEOUT)
        # One process applied every file under the lock; the others found them applied.
        applied = sorted(bot.output.count("Applied migrations") for bot in bots)
        assert applied == [0] * (BOTS - 1) + [1], [bot.output for bot in bots]
        for bot in bots:
            assert "Traceback" not in bot.output, bot.output
            assert bot.returncode is None
