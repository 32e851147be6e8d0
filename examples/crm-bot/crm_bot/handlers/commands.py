"""Text mode: commands are recorded as ``command_used`` events."""

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from ecosystem_shared.analytics import Analytics
from ecosystem_shared.notifications import MESSAGE_LIMIT
from ecosystem_shared.sanitize import clean_text


def router() -> Router:
    """A fresh router per call (one per dispatcher)."""
    routes = Router(name="commands")
    routes.message.register(command_used, Command("echo", "about"))
    return routes


async def command_used(message: Message, command: CommandObject, analytics: Analytics) -> None:
    user = message.from_user
    await analytics.track_event(
        telegram_id=user.id if user else None,
        event_type="command_used",
        event_data={"command": command.command, "args": command.args},
    )
    if command.command == "echo":
        # Whatever the user sent, as a message Telegram takes: valid UTF-8, not too long.
        echo = clean_text(command.args or "", MESSAGE_LIMIT)
        await message.answer(echo if echo.strip() else "…")
    else:
        await message.answer("Built from the ecosystem bot template.")
