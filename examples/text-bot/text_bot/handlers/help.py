"""/help and the fallback for anything no other handler took."""

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import Message

from ecosystem_shared.config import SharedSettings

from ..texts import bot_texts

router = Router(name="help")


@router.message(Command("help"))
async def help_command(message: Message, settings: SharedSettings) -> None:
    await message.answer(bot_texts(settings.LANGUAGE).help)


@router.message(F.chat.type == "private")
async def fallback(message: Message, settings: SharedSettings) -> None:
    await message.answer(bot_texts(settings.LANGUAGE).unknown)
