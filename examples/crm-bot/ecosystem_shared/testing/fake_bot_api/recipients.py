"""Who the bot cannot reach: blocked or deleted users, missing chats, flood control
(the rules themselves live in ``ecosystem_shared/testing/fake_recipients.py``)."""

from __future__ import annotations

from typing import Any

from ecosystem_shared.testing.fake_bot_api.fields import ApiError, Params
from ecosystem_shared.testing.fake_bot_api.updates import Updates
from ecosystem_shared.testing.fake_recipients import FloodControl, Send, SendLog, as_set


class RecipientControls(Updates):
    """Recipients of a :class:`FakeBotAPI` (part of the server)."""

    flood: FloodControl | None
    send_log: SendLog  # every send request with its arrival time and answer

    def block(self, *user_ids: int, notify: bool = False) -> None:
        """These users blocked the bot: anything aimed at their chats gets 403 "Forbidden: bot
        was blocked by the user". ``notify``: also push the ``my_chat_member`` "kicked" update
        Telegram sends."""
        self.recipients.blocked |= as_set(user_ids)
        for user_id in user_ids if notify else ():
            self.push_my_chat_member(user_id, "kicked")

    def unblock(self, *user_ids: int, notify: bool = False) -> None:
        """Reachable again (``notify``: push ``my_chat_member`` "member", as after /start)."""
        self.recipients.blocked -= as_set(user_ids)
        for user_id in user_ids if notify else ():
            self.push_my_chat_member(user_id, "member")

    def deactivate(self, *user_ids: int) -> None:
        """These accounts are deleted: 403 "Forbidden: user is deactivated"."""
        self.recipients.deactivated |= as_set(user_ids)

    def forget_chats(self, *chat_ids: int | str) -> None:
        """These chats do not exist: 400 "Bad Request: chat not found"."""
        self.recipients.missing |= as_set(chat_ids)

    def set_flood_control(
        self, control: FloodControl | None = None, /, **options: Any
    ) -> FloodControl | None:
        """Answer sends with 429 per ``control`` or ``FloodControl(**options)``
        (``every=``, ``probability=`` + ``seed=``, ``per_second=``, ``per_chat_per_second=``,
        ``retry_after=``, ``hold=``); without either, flood control is off again."""
        if control is None and options:
            control = FloodControl(**options)
        self.flood = control
        return control

    @property
    def sends(self) -> list[Send]:
        return self.send_log.sends

    def _refusal(self, method: str, params: Params) -> ApiError | None:
        chat_id = params.get("chat_id")
        refusal = self.flood.refusal(method, chat_id) if self.flood is not None else None
        if refusal is None and chat_id is not None:
            refusal = self.recipients.refusal(chat_id)
        return ApiError(*refusal) if refusal is not None else None
