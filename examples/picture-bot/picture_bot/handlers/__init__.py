"""This bot's handlers. Add a module here and include its router in build_router()."""

from aiogram import Router
from aiogram.types import BotCommand

from ecosystem_shared.config import SharedSettings

from . import help, media, start

# Shown in Telegram's command menu (set at start).
COMMANDS = [
    BotCommand(command="start", description="Start"),
    BotCommand(command="help", description="Help"),
]


def build_router(settings: SharedSettings) -> Router:
    router = Router(name="picture_bot")
    router.include_routers(
        start.router,
        media.router,
        # Last: answers whatever no other handler took.
        help.router,
    )
    return router
