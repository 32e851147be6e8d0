"""Three bot processes start together on an ecosystem deployed before partitioning, with a
populated plain events table, while users keep writing to them: one process switches the table,
every event is kept once with its id, and no bot drops or errors."""

import asyncio
import contextlib

import asyncpg
import pytest

from ecosystem_shared.analytics import parse_counters
from ecosystem_shared.migrations import apply_migrations, shared_migrations
from ecosystem_shared.testing.bot_process import BotProcess
from ecosystem_shared.testing.fake_bot_api import FakeBotAPI
from ecosystem_shared.testing.postgres import (
    create_database,
    drop_database,
    new_database_name,
    with_database,
)
from ecosystem_shared.testing.waiting import fetch, wait_until

pytestmark = pytest.mark.slow  # three bot processes and a 300k-event copy

TIMEOUT = 120.0  # generous for a busy machine; nothing waits this long when all is well
BOTS = 3
EVENTS = 300_000
PLAIN_SCHEMA = [path for path in shared_migrations() if path.name < "06"]


async def populate(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await apply_migrations(conn, PLAIN_SCHEMA)
        await conn.execute(
            "INSERT INTO shared.users (telegram_id, first_name)"
            " SELECT g, 'U' FROM generate_series(1, 5000) g"
        )
        await conn.execute(
            "INSERT INTO shared.analytics_events"
            " (telegram_id, bot_name, event_type, event_data, created_at)"
            " SELECT g % 5000 + 1, 'Old Bot', 'photo_sent', jsonb_build_object('count', g % 4),"
            " now() - (g % 300) * interval '1 day' FROM generate_series(1, $1) g",
            EVENTS,
        )
    finally:
        await conn.close()


async def stop_if_started(bot: BotProcess) -> None:
    if bot.pid is not None:
        assert await bot.stop() == 0, bot.output[-2000:]


async def test_bots_switch_a_populated_table_once_while_writing(
    postgres_url: str, bot_module: str, request: pytest.FixtureRequest
) -> None:
    name = new_database_name()
    database_url = with_database(postgres_url, name)
    await create_database(postgres_url, name)
    env = {
        "DATABASE_URL": database_url,
        "RATE_LIMIT_SECONDS": "0",
        "ANALYTICS_FLUSH_SECONDS": "0.05",
        "DIGEST_TIMEZONE": "UTC",
    }
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(drop_database, postgres_url, name)
        await populate(database_url)
        before = await fetch(
            database_url, "SELECT count(*) AS n, sum(id) AS s FROM shared.analytics_events"
        )
        bots: list[BotProcess] = []
        for i in range(BOTS):
            api = await stack.enter_async_context(FakeBotAPI(token=f"{7101 + i}:TEST-token-{i}"))
            bot = BotProcess(
                bot_module,
                request.config.rootpath,
                api,
                env | {"BOT_NAME": f"Writer {i}"},
                start_timeout=90,
            )
            stack.push_async_callback(stop_if_started, bot)
            bots.append(bot)

        pushed = 0
        switched = asyncio.Event()

        async def users_write() -> None:
            nonlocal pushed
            while not switched.is_set():
                for bot in bots:
                    if bot.pid is not None:
                        bot.api.push_message("/start", user_id=100_000 + pushed)
                        pushed += 1
                await asyncio.sleep(0.02)
            for _ in range(20):  # and on into the partitioned table
                for bot in bots:
                    bot.api.push_message("/start", user_id=100_000 + pushed)
                    pushed += 1
                await asyncio.sleep(0.02)

        async def finished() -> bool:
            rows = await fetch(
                database_url,
                "SELECT to_regclass('shared.analytics_events_migration') IS NOT NULL AS ready",
            )
            if not rows[0]["ready"]:
                return False
            state = await fetch(
                database_url, "SELECT finished_at FROM shared.analytics_events_migration"
            )
            return bool(state and state[0]["finished_at"] is not None)

        writer = asyncio.create_task(users_write())
        try:
            await asyncio.gather(*(bot.start() for bot in bots))
            await wait_until(finished, timeout=TIMEOUT, interval=0.2, what="the switch")
        finally:
            switched.set()
            await writer

        async def stored() -> int:
            rows = await fetch(
                database_url,
                "SELECT count(*) AS n FROM shared.analytics_events WHERE telegram_id >= 100000",
            )
            return int(rows[0]["n"])

        await wait_until(stored, lambda n: n >= pushed, timeout=TIMEOUT, what="every /start")
        outputs = []
        for bot in bots:
            assert await bot.stop() == 0, bot.output[-2000:]
            outputs.append(bot.output)

        # (the database is dropped on leaving the block: read everything before)
        after = await fetch(
            database_url,
            "SELECT count(*) AS n, count(DISTINCT id) AS d, sum(id) AS s,"
            " (SELECT relkind FROM pg_class WHERE oid = 'shared.analytics_events'::regclass) AS k,"
            " (SELECT count(*) FROM shared.schema_migrations"
            "  WHERE name = 'ecosystem_shared/06-analytics-partitions.sql') AS m,"
            " (SELECT writes_blocked_ms FROM shared.analytics_events_migration) AS blocked,"
            " (SELECT to_regclass('shared.analytics_events_plain')) AS plain"
            " FROM shared.analytics_events",
        )
        during = await fetch(
            database_url,
            # Users' events the copy's batches or the swap's tail took from the plain table.
            "SELECT count(*) + (SELECT tail_rows FROM shared.analytics_events_migration) AS n"
            " FROM shared.analytics_events WHERE telegram_id >= 100000"
            " AND id <= (SELECT copied_upto FROM shared.analytics_events_migration)",
        )
        new_ids = await fetch(
            database_url,
            "SELECT sum(id) AS s FROM shared.analytics_events WHERE telegram_id >= 100000",
        )
    row = after[0]
    assert row["n"] == before[0]["n"] + pushed == row["d"]  # each event once
    assert row["s"] == before[0]["s"] + new_ids[0]["s"]  # the old ids kept
    assert row["k"] == b"p" and row["m"] == 1 and row["plain"] is None
    assert row["blocked"] < 5000
    assert during[0]["n"] > 0, "no user wrote into the plain table while it was being switched"
    assert sum(output.count("switched to the partitioned table") for output in outputs) == 1
    for output in outputs:
        counters = parse_counters(output)
        assert counters is not None and counters["dropped"] == 0, output[-3000:]
        assert "Traceback" not in output and " ERROR " not in output, output[-3000:]
