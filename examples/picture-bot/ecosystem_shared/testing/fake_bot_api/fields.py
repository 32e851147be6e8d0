"""What the fake Bot API knows of Telegram's fields, methods and error texts (no behaviour)."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


DEFAULT_TOKEN = "123456:TEST-token"
ANONYMOUS_ADMIN_ID = 1087968824  # GroupAnonymousBot: "from" of anonymous group admins' messages
MAX_TEXT, MAX_CAPTION, MB = 4096, 1024, 1024 * 1024
UPDATE_TYPES = _words(
    "message edited_message channel_post edited_channel_post business_connection business_message"
    " edited_business_message deleted_business_messages message_reaction message_reaction_count"
    " inline_query chosen_inline_result callback_query shipping_query pre_checkout_query"
    " purchased_paid_media poll poll_answer my_chat_member chat_member chat_join_request"
    " chat_boost removed_chat_boost"
)
# What getUpdates delivers when allowed_updates is [] or was never set (Bot API docs).
DEFAULT_ALLOWED = UPDATE_TYPES - {"chat_member", "message_reaction", "message_reaction_count"}
# Form values are strings; these stay strings, INT_FIELDS become ints, others may be JSON.
TEXT_FIELDS = _words(
    "text caption query data title description message_text question explanation first_name"
    " last_name name short_description url callback_query_id inline_query_id file_id"
)
INT_FIELDS = _words(
    "chat_id from_chat_id message_id reply_to_message_id message_thread_id user_id offset limit"
    " timeout duration width height cache_time until_date"
)
FILE_FIELDS = ("photo", "video", "document", "audio", "voice", "animation", "sticker", "video_note")
HTML_TAGS = _words(
    "b strong i em u ins s strike del span tg-spoiler a code pre blockquote tg-emoji"
)
DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
    502: "Bad Gateway",
}
# Single-file send methods: (field and result key, fixed fields of the result object).
MEDIA_METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "sendvideo": ("video", {"width": 640, "height": 360, "duration": 1, "mime_type": "video/mp4"}),
    "senddocument": ("document", {}),
    "sendaudio": ("audio", {"duration": 1}),
    "sendvoice": ("voice", {"duration": 1}),
    "sendanimation": ("animation", {"width": 320, "height": 240, "duration": 1}),
}
CANONICAL = {
    name.lower(): name
    for name in _words(
        "getMe getUpdates sendMessage sendPhoto sendVideo sendDocument sendAudio sendVoice"
        " sendAnimation sendMediaGroup setMyCommands deleteWebhook answerCallbackQuery getFile"
        " logOut close editMessageText deleteMessage sendChatAction setWebhook getWebhookInfo"
    )
}

Params = dict[str, Any]


class ApiError(Exception):
    """An error envelope: ``{"ok": false, "error_code": ..., "description": ...}``."""

    def __init__(self, code: int, description: str | None = None, retry_after: int | None = None):
        if description is None and code == 429:
            description = f"Too Many Requests: retry after {retry_after}"
        self.description = description or DESCRIPTIONS.get(code, "Error")
        super().__init__(self.description)
        self.code, self.retry_after = code, retry_after

    def response(self) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": self.code}
        body["description"] = self.description
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return web.json_response(body, status=self.code)


def decode(key: str, value: Any) -> Any:
    """Form fields are strings: parse JSON objects/arrays, ids and booleans."""
    if not isinstance(value, str) or key in TEXT_FIELDS:
        return value
    if value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if key in INT_FIELDS and re.fullmatch(r"-?\d+", value):
        return int(value)
    return {"true": True, "false": False}.get(value, value)


def is_local_path(ref: Any) -> bool:
    return isinstance(ref, str) and ref.startswith(("file://", "/"))
