"""Fixtures of the fake Bot API's own tests: a server per test and a real aiogram Bot on it."""

from collections.abc import AsyncIterator

import pytest_asyncio
from aiogram import Bot

from ecosystem_shared.testing.fake_bot_api import FakeBotAPI
from ecosystem_shared.testing.telegram_fixtures import bot_for


@pytest_asyncio.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as server:
        yield server


@pytest_asyncio.fixture
async def bot(api: FakeBotAPI) -> AsyncIterator[Bot]:
    bot = bot_for(api)
    yield bot
    await bot.session.close()
