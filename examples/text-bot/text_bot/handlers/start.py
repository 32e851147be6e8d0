"""/start: register the user in the shared schema, tell the channel about new users, greet."""

from aiogram import Router
from aiogram.filters import CommandStart
from aiogram.types import Message

from ecosystem_shared.analytics import Analytics
from ecosystem_shared.config import SharedSettings
from ecosystem_shared.notifications import Notifier

from ..texts import bot_texts

router = Router(name="start")


@router.message(CommandStart())
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
    is_new = await analytics.track_user_start(
        telegram_id=user.id,
        username=user.username,
        first_name=user.first_name,
        last_name=user.last_name,
        language_code=user.language_code,
    )
    await message.answer(texts.greeting.format(name=user.first_name))
    if is_new:
        # After the reply: the user should not wait for the channel.
        await notifier.new_user(
            telegram_id=user.id,
            username=user.username,
            first_name=user.first_name,
            bot_name=bot_name,
        )
