"""Text mode: commands are recorded as ``command_used`` events."""

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from ecosystem_shared.analytics import Analytics

router = Router(name="commands")


@router.message(Command("echo", "about"))
async def command_used(message: Message, command: CommandObject, analytics: Analytics) -> None:
    user = message.from_user
    await analytics.track_event(
        telegram_id=user.id if user else None,
        event_type="command_used",
        event_data={"command": command.command, "args": command.args},
    )
    if command.command == "echo":
        await message.answer(command.args or "…")
    else:
        await message.answer("Built from the ecosystem bot template.")
