"""The last word on a failed update: what no errors handler of the bot took is logged with its
traceback, recorded as an ``error`` event (redacted), and answered with a friendly text.

aiogram routes an exception raised while handling an update as an ``error`` event (its
``ErrorsMiddleware``, the outermost middleware of ``dp.update``): the dispatcher's errors
handlers, then those of its routers in the order they were included, until one handles it.
:class:`ErrorReporter` is an outer middleware of ``dp.errors``, so it wraps that whole
propagation and acts only when it comes back unhandled: a bot's own ``@router.errors()``
handlers run first, wherever their router is included, and an error one of them handles is not
reported again (an errors handler passes an error on by raising ``SkipHandler``).

A reply refused because the user blocked the bot or deleted the account (403) is not the bot's
error: logged at INFO, no ``error`` event, no friendly text (it could not be delivered either);
the user is marked blocked by the session's ``BlockedChatWatch`` (audience_tracking.py).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from aiogram import BaseMiddleware, Bot
from aiogram.dispatcher.event.bases import UNHANDLED, CancelHandler, SkipHandler
from aiogram.exceptions import TelegramAPIError, TelegramForbiddenError, TelegramNetworkError
from aiogram.types import Chat, ErrorEvent, TelegramObject, User

from ecosystem_shared.audience_tracking import means_user_gone
from ecosystem_shared.log import redact

if TYPE_CHECKING:
    from ecosystem_shared.analytics import Analytics

logger = logging.getLogger(__name__)


class ErrorReporter(BaseMiddleware):
    """Outer middleware on ``dp.errors``: the bot keeps serving whatever a handler raises."""

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
            response = await handler(event, data)
        except (SkipHandler, CancelHandler):
            raise
        except Exception:
            # The bot's errors handler failed in turn: say so, then report the original error.
            logger.exception("An errors handler failed")
            response = UNHANDLED
        if response is not UNHANDLED or not isinstance(event, ErrorEvent):
            return response
        await self.report(event, data)
        return None

    async def report(self, event: ErrorEvent, data: dict[str, Any]) -> None:
        error = event.exception
        if isinstance(error, TelegramForbiddenError) and means_user_gone(error):
            logger.info("Update %s not answered: %s", event.update.update_id, error.message)
            return
        logger.error(
            "Unhandled error in update %s", event.update.update_id, exc_info=error
        )  # the log formatter redacts secrets, in the traceback too
        user: User | None = data.get("event_from_user")
        analytics: Analytics | None = data.get("analytics")
        if analytics is not None:
            message = redact(f"{type(error).__name__}: {error}", self.secrets)
            await analytics.track_error(user.id if user else None, message)
        await self._tell_user(event, data)

    async def _tell_user(self, event: ErrorEvent, data: dict[str, Any]) -> None:
        bot: Bot | None = data.get("bot")
        chat: Chat | None = data.get("event_chat")
        try:
            if event.update.callback_query is not None:
                await event.update.callback_query.answer(self.error_text, show_alert=True)
            elif bot is not None and chat is not None and chat.type != "channel":
                await bot.send_message(chat.id, self.error_text)
        except (TelegramAPIError, TelegramNetworkError) as error:
            logger.warning("Error reply not delivered: %s", error)
