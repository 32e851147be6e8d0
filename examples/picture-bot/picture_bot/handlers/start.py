"""/start: register the user in the shared schema, tell the channel about new users, greet."""

import asyncio

from aiogram import Router
from aiogram.filters import CommandStart
from aiogram.types import Message

from ecosystem_shared.analytics import Analytics
from ecosystem_shared.config import SharedSettings
from ecosystem_shared.notifications import Notifier
from ecosystem_shared.sanitize import display_name

from ..texts import bot_texts


def router() -> Router:
    """A fresh router per call (one per dispatcher)."""
    routes = Router(name="start")
    routes.message.register(start, CommandStart())
    return routes


async def start(
    message: Message,
    analytics: Analytics,
    notifier: Notifier,
    settings: SharedSettings,
    bot_name: str,
) -> None:
    texts = bot_texts(settings.LANGUAGE)
    user = message.from_user
    if user is None or user.is_bot:
        # Channel posts and anonymous group admins carry no user to register.
        await message.answer(texts.help)
        return
    # Register while the greeting goes out: the reply never waits for the database, and a failed
    # reply (the user blocked the bot) still records the /start. track_user_start never raises.
    registering = asyncio.ensure_future(
        analytics.track_user_start(
            telegram_id=user.id,
            username=user.username,
            first_name=user.first_name,
            last_name=user.last_name,
            language_code=user.language_code,
        )
    )
    try:
        await message.answer(texts.greeting.format(name=display_name(user.first_name)))
    finally:
        is_new = await registering
    if is_new:
        await notifier.new_user(
            telegram_id=user.id,
            username=user.username,
            first_name=user.first_name,
            bot_name=bot_name,
        )
