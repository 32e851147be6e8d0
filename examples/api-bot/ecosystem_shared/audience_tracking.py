"""Who blocked the bot, seen from Telegram's side: ``my_chat_member`` updates of private chats
and 403 answers to anything the bot sends. Both buffer a mark in :class:`Analytics` (written to
``shared.bot_audience`` with its next batch): no database call on the handler's path.

Telegram reports a user blocking the bot as ``my_chat_member`` with ``new_chat_member.status``
"kicked", unblocking (or /start after a block) as "member", and refuses sends to a user who
blocked the bot with 403 "Forbidden: bot was blocked by the user", to a deleted account with 403
"Forbidden: user is deactivated" (public evidence: testing/fake_recipients.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiogram import Bot, F, Router
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.enums import ChatType
from aiogram.exceptions import TelegramForbiddenError
from aiogram.filters import KICKED, MEMBER, ChatMemberUpdatedFilter
from aiogram.methods import TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import ChatMemberUpdated

if TYPE_CHECKING:
    from ecosystem_shared.analytics import Analytics

logger = logging.getLogger(__name__)

__all__ = ["GONE_USER_ERRORS", "BlockedChatWatch", "audience_router", "means_user_gone"]

# Descriptions of the 403s after which the user cannot be messaged until they come back.
GONE_USER_ERRORS = ("bot was blocked by the user", "user is deactivated")


def means_user_gone(error: TelegramForbiddenError) -> bool:
    message = error.message.lower()
    return any(text in message for text in GONE_USER_ERRORS)


class BlockedChatWatch(BaseRequestMiddleware):
    """Session middleware: a 403 "blocked"/"deactivated" to a method aimed at a user's private
    chat (a reply, a notification, a broadcast) marks the user blocked; the error still
    propagates to the caller."""

    def __init__(self, analytics: Analytics) -> None:
        self.analytics = analytics

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Any:
        try:
            return await make_request(bot, method)
        except TelegramForbiddenError as error:
            chat_id = getattr(method, "chat_id", None)
            # Positive ids are users (private chats); groups and channels are negative.
            if isinstance(chat_id, int) and chat_id > 0 and means_user_gone(error):
                self.analytics.mark_blocked(chat_id)
            raise


async def _blocked(event: ChatMemberUpdated, analytics: Analytics | None = None) -> None:
    if analytics is not None:
        analytics.mark_blocked(event.chat.id, at=event.date)
    raise SkipHandler  # the bot's own my_chat_member handlers still see the update


async def _reachable(event: ChatMemberUpdated, analytics: Analytics | None = None) -> None:
    if analytics is not None:
        language = event.from_user.language_code if event.from_user else None
        analytics.mark_reachable(event.chat.id, language_code=language, at=event.date)
    raise SkipHandler


def audience_router() -> Router:
    """Included by ``build_dispatcher`` before the bot's routers (a fresh one per dispatcher):
    its handlers make the dispatcher ask Telegram for ``my_chat_member`` updates."""
    router = Router(name="ecosystem-audience")
    router.my_chat_member.filter(F.chat.type == ChatType.PRIVATE)
    router.my_chat_member.register(_blocked, ChatMemberUpdatedFilter(member_status_changed=KICKED))
    router.my_chat_member.register(
        _reachable, ChatMemberUpdatedFilter(member_status_changed=MEMBER)
    )
    return router
