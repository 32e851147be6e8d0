"""Baseline for the benchmark: a bare aiogram bot answering /start, nothing else.

Same Bot API server and polling as the generated bot; no middlewares, no database.
"""

import asyncio
import os

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.filters import CommandStart
from aiogram.types import Message

dp = Dispatcher()


@dp.message(CommandStart())
async def start(message: Message) -> None:
    name = message.from_user.first_name if message.from_user else "there"
    await message.answer(f"Hi, {name}!")


async def main() -> None:
    api = TelegramAPIServer.from_base(os.environ["TELEGRAM_API_BASE_URL"])
    bot = Bot(os.environ["BOT_TOKEN"], session=AiohttpSession(api=api))
    await dp.start_polling(bot, handle_signals=True)


if __name__ == "__main__":
    asyncio.run(main())
