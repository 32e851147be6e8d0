"""Catch what handlers raise: log with traceback, tell the user, record an ``error`` event."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from aiogram import BaseMiddleware, Bot
from aiogram.exceptions import TelegramAPIError, TelegramNetworkError
from aiogram.types import Chat, TelegramObject, Update, User

from ecosystem_shared.log import redact

if TYPE_CHECKING:
    from ecosystem_shared.analytics import Analytics

logger = logging.getLogger(__name__)


class ErrorMiddleware(BaseMiddleware):
    """Outer middleware on ``dp.update``: the bot keeps serving whatever a handler raises."""

    def __init__(self, error_text: str, secrets: Iterable[str] = ()) -> None:
        self.error_text = error_text
        self.secrets = tuple(secrets)

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        try:
            return await handler(event, data)
        except Exception as error:
            update_id = event.update_id if isinstance(event, Update) else None
            logger.exception("Unhandled error in update %s", update_id)
            user: User | None = data.get("event_from_user")
            analytics: Analytics | None = data.get("analytics")
            if analytics is not None:
                message = redact(f"{type(error).__name__}: {error}", self.secrets)
                await analytics.track_error(user.id if user else None, message)
            await self._tell_user(event, data)
            return None

    async def _tell_user(self, event: TelegramObject, data: dict[str, Any]) -> None:
        bot: Bot | None = data.get("bot")
        chat: Chat | None = data.get("event_chat")
        try:
            if isinstance(event, Update) and event.callback_query is not None:
                await event.callback_query.answer(self.error_text, show_alert=True)
            elif bot is not None and chat is not None and chat.type != "channel":
                await bot.send_message(chat.id, self.error_text)
        except (TelegramAPIError, TelegramNetworkError) as error:
            logger.warning("Error reply not delivered: %s", error)
