"""The seed's way, for comparison: every /start upserts the user and INSERTs its event
inside the handler (a pool acquire and database round trips before each reply)."""

import asyncio
import os

import asyncpg
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.filters import CommandStart
from aiogram.types import Message

dp = Dispatcher()

UPSERT = """
INSERT INTO shared.users (telegram_id, username, first_name, last_name, language_code)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (telegram_id) DO UPDATE SET last_seen = NOW()
RETURNING (xmax = 0)
"""
EVENT = """
INSERT INTO shared.analytics_events (telegram_id, bot_name, event_type, event_data)
VALUES ($1, $2, 'user_start', NULL)
"""


@dp.message(CommandStart())
async def start(message: Message, pool: asyncpg.Pool) -> None:
    user = message.from_user
    if user is None:
        return
    async with pool.acquire() as conn:
        await conn.fetchval(
            UPSERT, user.id, user.username, user.first_name, user.last_name, user.language_code
        )
    async with pool.acquire() as conn:
        await conn.execute(EVENT, user.id, "Seed Bot")
    await message.answer(f"Hi, {user.first_name}!")


async def main() -> None:
    api = TelegramAPIServer.from_base(os.environ["TELEGRAM_API_BASE_URL"])
    bot = Bot(os.environ["BOT_TOKEN"], session=AiohttpSession(api=api))
    pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=1, max_size=5)
    try:
        await dp.start_polling(bot, handle_signals=True, pool=pool)
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main())
