"""The update queue getUpdates and the webhook serve, and the Telegram objects tests push."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import re
import time
from typing import Any

from ecosystem_shared.testing.fake_bot_api.fields import (
    ANONYMOUS_ADMIN_ID,
    DEFAULT_ALLOWED,
    UPDATE_TYPES,
)
from ecosystem_shared.testing.fake_recipients import Recipients


class Updates:
    """Updates and message objects of a :class:`FakeBotAPI` (part of the server); also the
    queue :class:`~ecosystem_shared.testing.fake_webhook.UpdateQueue` the webhook reads."""

    me: dict[str, Any]
    recipients: Recipients
    allowed_updates: frozenset[str]
    updates_served: int
    _updates: list[dict[str, Any]]
    _update_id: int
    _ids: itertools.count[int]  # message, file and callback query ids
    _bot_messages: dict[int, list[dict[str, Any]]]  # chat id -> sent messages
    _callback_ids: set[str]
    _wakeup: asyncio.Event
    _changed: asyncio.Event

    # ------------------------------------------------------------------ the queue
    def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Queue an update for getUpdates (``update_id`` assigned when missing)."""
        update.setdefault("update_id", self._update_id)
        self._update_id = max(self._update_id, int(update["update_id"])) + 1
        self._updates.append(update)
        self._wakeup.set()
        return update

    push_raw = push_update  # malformed or unknown update types are delivered as they are

    # Queue access for the webhook delivery (fake_webhook.py).
    default_allowed = DEFAULT_ALLOWED

    @property
    def pending(self) -> int:
        return len(self._updates)

    @property
    def wakeup_event(self) -> asyncio.Event:
        return self._wakeup

    def wakeup(self) -> None:
        self._wakeup.set()
        self._changed.set()

    def drop_pending(self) -> None:
        self._updates.clear()

    def deliverable_updates(self) -> list[dict[str, Any]]:
        self._updates = [update for update in self._updates if self._deliverable(update)]
        return list(self._updates)

    def confirm(self, update: dict[str, Any]) -> None:
        """A webhook delivery succeeded: the update leaves the queue."""
        if update in self._updates:
            self._updates.remove(update)
            self.updates_served += 1

    def _deliverable(self, update: dict[str, Any]) -> bool:
        """Telegram drops update types the bot did not ask for (unknown types pass here)."""
        kinds = UPDATE_TYPES.intersection(update)
        return not kinds or bool(kinds & self.allowed_updates)

    # ------------------------------------------------------------------ Telegram objects
    @staticmethod
    def user(
        user_id: int,
        first_name: str = "Test",
        username: str | None = None,
        last_name: str | None = None,
        language_code: str | None = "en",
    ) -> dict[str, Any]:
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        optional = {"last_name": last_name, "username": username, "language_code": language_code}
        return user | {key: value for key, value in optional.items() if value is not None}

    @staticmethod
    def chat(chat_id: int | str, kind: str | None = None) -> dict[str, Any]:
        """A chat object for an id (``@name`` is a public channel)."""
        if isinstance(chat_id, str) and not re.fullmatch(r"-?\d+", chat_id):
            number = int(hashlib.sha256(chat_id.encode()).hexdigest()[:10], 16)
            name = chat_id.lstrip("@")
            return {"id": -(10**12) - number, "type": "channel", "title": name, "username": name}
        cid = int(chat_id)
        kind = kind or ("private" if cid > 0 else "supergroup" if cid < -(10**12) else "group")
        if kind == "private":
            return {"id": cid, "type": kind, "first_name": "Test"}
        return {"id": cid, "type": kind, "title": f"Test {kind} {cid}"}

    def _message(
        self, chat: dict[str, Any], text: str, sender: dict[str, Any] | None = None, **extra: Any
    ) -> dict[str, Any]:
        message: dict[str, Any] = {"message_id": next(self._ids), "date": int(time.time())}
        message |= {"chat": chat, "text": text} | ({"from": sender} if sender else {})
        if text.startswith("/"):
            length = len(text.split()[0])
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        return message | extra

    def _user_message(
        self, text: str, sender: dict[str, Any], chat_id: int | None, extra: dict[str, Any]
    ) -> dict[str, Any]:
        if chat_id is not None:
            chat = self.chat(chat_id)
        else:
            names = {
                key: sender[key] for key in ("first_name", "last_name", "username") if key in sender
            }
            chat = {"id": sender["id"], "type": "private"} | names
        return self._message(chat, text, sender, **extra)

    def _bot_message(self, chat_id: Any, **content: Any) -> dict[str, Any]:
        """A message the bot sent (in channels: ``sender_chat`` instead of "from")."""
        chat = self.chat(chat_id)
        message: dict[str, Any] = {"message_id": next(self._ids), "date": int(time.time())}
        message["chat"] = chat
        message |= {"sender_chat": chat} if chat["type"] == "channel" else {"from": self.me}
        message |= {key: value for key, value in content.items() if value is not None}
        self._bot_messages.setdefault(chat["id"], []).append(message)
        return message

    # ------------------------------------------------------------------ updates tests push
    def push_message(
        self,
        text: str,
        user_id: int = 1001,
        chat_id: int | None = None,
        *,
        username: str | None = None,
        first_name: str = "Test",
        last_name: str | None = None,
        language_code: str | None = "en",
        **extra: Any,
    ) -> dict[str, Any]:
        """A user's message (private chat unless ``chat_id``); ``extra`` goes into the message."""
        sender = self.user(user_id, first_name, username, last_name, language_code)
        return self.push_update({"message": self._user_message(text, sender, chat_id, extra)})

    def push_edited_message(
        self, text: str, user_id: int = 1001, chat_id: int | None = None, **extra: Any
    ) -> dict[str, Any]:
        extra.setdefault("edit_date", int(time.time()))
        message = self._user_message(text, self.user(user_id), chat_id, extra)
        return self.push_update({"edited_message": message})

    def push_callback_query(
        self, data: str, user_id: int = 1001, message_id: int | None = None
    ) -> dict[str, Any]:
        """A button press under the bot's last (or given) message in the user's private chat."""
        sent = [
            message
            for message in self._bot_messages.get(user_id, [])
            if message_id is None or message["message_id"] == message_id
        ]
        message = sent[-1] if sent else self._bot_message(user_id, text="(a message)")
        query_id = str(next(self._ids))
        self._callback_ids.add(query_id)
        query = {"id": query_id, "from": self.user(user_id), "chat_instance": f"ci{user_id}"}
        return self.push_update({"callback_query": query | {"message": message, "data": data}})

    def push_channel_post(self, text: str, chat_id: int = -1001000000001) -> dict[str, Any]:
        """A post in a channel the bot administers: no "from", ``sender_chat`` is the channel."""
        chat = self.chat(chat_id, "channel")
        return self.push_update({"channel_post": self._message(chat, text, sender_chat=chat)})

    def push_anonymous_admin_message(
        self, text: str, chat_id: int = -1001000000002
    ) -> dict[str, Any]:
        """A group admin posting anonymously: "from" is GroupAnonymousBot, sender_chat the group."""
        chat = self.chat(chat_id, "supergroup")
        anonymous = {"id": ANONYMOUS_ADMIN_ID, "is_bot": True, "first_name": "Group"}
        anonymous["username"] = "GroupAnonymousBot"
        message = self._message(chat, text, sender=anonymous, sender_chat=chat)
        return self.push_update({"message": message})

    def push_my_chat_member(
        self, user_id: int = 1001, new_status: str = "kicked"
    ) -> dict[str, Any]:
        """The user blocked (``kicked``) or restarted (``member``) the bot in a private chat."""

        def member(status: str) -> dict[str, Any]:
            return {"status": status, "user": self.me} | (
                {"until_date": 0} if status == "kicked" else {}
            )

        old = "kicked" if new_status == "member" else "member"
        if new_status == "kicked":  # Telegram refuses sends to this chat from now on
            self.recipients.blocked.add(user_id)
        elif new_status == "member":
            self.recipients.blocked.discard(user_id)
        change = {"chat": self.chat(user_id), "from": self.user(user_id), "date": int(time.time())}
        change |= {"old_chat_member": member(old), "new_chat_member": member(new_status)}
        return self.push_update({"my_chat_member": change})
