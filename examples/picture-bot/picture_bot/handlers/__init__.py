"""This bot's handlers. Add a module with a ``router()`` factory and include it in build_router().

Each call of build_router() builds fresh routers: aiogram attaches a router to one parent only, so
several dispatchers in one process (tests, a multi-bot host) each get their own.
"""

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
        start.router(),
        media.router(),
        # Last: answers whatever no other handler took.
        help.router(),
    )
    return router
