"""``shared.bots`` (slug -> BOT_NAME): the upsert, the registration after the first connection
(a database down at start delays it), the bot process registering itself, and the lookup
``--also-uses`` relies on."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg
import pytest

from ecosystem_shared.bot_registry import BotRegistration, find_bot_name, known_bots, register_bot
from ecosystem_shared.db import Database
from ecosystem_shared.migrations import shared_migrations
from ecosystem_shared.testing.postgres import PostgresServer
from ecosystem_shared.testing.telegram_fixtures import StartBot
from ecosystem_shared.testing.waiting import fetch, wait_until

ROW = "SELECT bot_name, first_started_at, last_started_at FROM shared.bots WHERE slug = $1"


async def test_upsert_records_then_renames_the_slug(db_conn: asyncpg.Connection) -> None:
    assert await register_bot(db_conn, "shop-bot", "Shop") is None
    first = await db_conn.fetchrow(ROW, "shop-bot")
    assert first["bot_name"] == "Shop"
    assert await register_bot(db_conn, "shop-bot", "Shop") == "Shop"  # a restart: same row
    assert await register_bot(db_conn, "shop-bot", "Big shop") == "Shop"  # BOT_NAME renamed
    renamed = await db_conn.fetchrow(ROW, "shop-bot")
    assert renamed["bot_name"] == "Big shop"
    assert renamed["first_started_at"] == first["first_started_at"]
    assert renamed["last_started_at"] >= first["last_started_at"]
    assert await db_conn.fetchval("SELECT count(*) FROM shared.bots") == 1


async def test_lookup_by_slug_then_by_name(db_conn: asyncpg.Connection) -> None:
    await register_bot(db_conn, "shop-bot", "Shop")
    await register_bot(db_conn, "legacy", "Echo")  # a slug that is another bot's name, lower
    await db_conn.execute(
        "INSERT INTO shared.bot_audience (bot_name, telegram_id, first_seen, last_seen)"
        " VALUES ('Legacy', 1, now(), now()), ('Shop', 1, now(), now())"
    )
    assert await find_bot_name(db_conn, "shop-bot") == "Shop"
    assert await find_bot_name(db_conn, " SHOP-BOT ") == "Shop"  # case and spaces ignored
    assert await find_bot_name(db_conn, "shop") == "Shop"  # by BOT_NAME, case-insensitive
    assert await find_bot_name(db_conn, "LEGACY") == "Echo"  # the slug wins over a name
    assert await find_bot_name(db_conn, "nobody") is None
    known = await known_bots(db_conn)
    assert known.slugs == ("legacy", "shop-bot")
    assert known.names == ("Echo", "Legacy", "Shop")  # registered or with an audience


async def registered(registration: BotRegistration) -> bool:
    return registration.registered


@pytest.mark.slow
async def test_database_down_at_start_registers_once_it_is_back(
    own_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    await asyncio.to_thread(own_server.stop)
    db = Database(own_server.url, migrations=shared_migrations(), reconnect_seconds=0.2)
    registration = BotRegistration(db, "shop-bot", "Shop")
    registration.start()
    try:
        await asyncio.wait_for(db.start(), 10)  # neither raises nor hangs
        assert not db.available
        assert registration.register in db.on_connected  # waiting for the first connection
        await asyncio.to_thread(own_server.start)
        await wait_until(lambda: registered(registration), timeout=20, what="the registration")
        assert registration.register not in db.on_connected  # once per process
        rows = await fetch(own_server.url, ROW, "shop-bot")
        assert rows[0]["bot_name"] == "Shop"
    finally:
        registration.close()
        await db.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.slow
async def test_a_failed_registration_is_retried_after_the_next_connection(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The table missing (a broken schema) fails the attempt with a warning, not the bot."""
    db = Database(database_url)
    registration = BotRegistration(db, "shop-bot", "Shop")
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("ALTER TABLE shared.bots RENAME TO bots_away")
        registration.start()
        await db.start()
        assert db.available
        assert registration.register in db.on_connected  # tried again at the next connection
        assert "Could not record bot shop-bot in shared.bots" in caplog.text
        await conn.execute("ALTER TABLE shared.bots_away RENAME TO bots")
        await registration.register()  # what the next on_connected does
        assert registration.registered
        assert (await conn.fetchrow(ROW, "shop-bot"))["bot_name"] == "Shop"
    finally:
        registration.close()
        await db.close()
        await conn.close()


@pytest.mark.slow
async def test_the_bot_process_registers_its_slug_and_a_renamed_bot_name(
    bot_process_factory: StartBot, database_url: str
) -> None:
    env: dict[str, Any] = {
        "DATABASE_URL": database_url,
        "BOT_SLUG": "registry-bot",
        "RATE_LIMIT_SECONDS": "0",
    }
    bot = await bot_process_factory(BOT_NAME="Registry bot", **env)
    rows = await wait_until(
        lambda: fetch(database_url, ROW, "registry-bot"), timeout=20, what="the first start"
    )
    assert rows[0]["bot_name"] == "Registry bot"
    assert await bot.stop() == 0
    bot = await bot_process_factory(BOT_NAME="Registry bot 2", **env)
    rows = await wait_until(
        lambda: fetch(database_url, ROW, "registry-bot"),
        lambda rows: bool(rows) and rows[0]["bot_name"] == "Registry bot 2",
        timeout=20,
        what="the renamed BOT_NAME",
    )
    assert rows[0]["last_started_at"] > rows[0]["first_started_at"]
    assert await bot.stop() == 0
    assert await fetch(database_url, "SELECT slug FROM shared.bots") == [("registry-bot",)]
