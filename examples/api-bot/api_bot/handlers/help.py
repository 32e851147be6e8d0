"""/help and the fallback for anything no other handler took."""

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import Message

from ecosystem_shared.config import SharedSettings

from ..texts import bot_texts


def router() -> Router:
    """A fresh router per call (one per dispatcher)."""
    routes = Router(name="help")
    routes.message.register(help_command, Command("help"))
    routes.message.register(fallback, F.chat.type == "private")
    return routes


async def help_command(message: Message, settings: SharedSettings) -> None:
    await message.answer(bot_texts(settings.LANGUAGE).help)


async def fallback(message: Message, settings: SharedSettings) -> None:
    await message.answer(bot_texts(settings.LANGUAGE).unknown)
