"""A fake Telegram Bot API server for process-level tests (speaks the real HTTP protocol).

The bot under test gets ``TELEGRAM_API_BASE_URL=api.base_url`` and talks to this server as it
would to api.telegram.org or a Local Bot API server: ``/bot<token>/<method>`` with multipart, form
or JSON bodies, long-polling ``getUpdates``, ``/file/bot<token>/<path>`` downloads. Tests push
updates, inspect the recorded calls and inject faults (429, 5xx, delays, an outage). Results are
real Telegram objects (aiogram parses them) and common mistakes get Telegram's own 400 errors.

Recipients (fake_recipients.py): users who blocked the bot (:meth:`FakeBotAPI.block`, also a
pushed ``my_chat_member`` "kicked") or deleted their account (:meth:`FakeBotAPI.deactivate`),
chats that do not exist (:meth:`FakeBotAPI.forget_chats`), flood control
(:meth:`FakeBotAPI.set_flood_control`), and the record of sends (:attr:`FakeBotAPI.send_log`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import json
import re
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from aiohttp import BodyPartReader, web

from ecosystem_shared.testing.fake_recipients import (
    SEND_METHODS,
    FloodControl,
    Recipients,
    Send,
    SendLog,
    as_set,
    chat_key,
)
from ecosystem_shared.testing.fake_webhook import WebhookDelivery

__all__ = [
    "ANONYMOUS_ADMIN_ID",
    "DEFAULT_TOKEN",
    "Call",
    "FakeBotAPI",
    "FloodControl",
    "Send",
    "SendLog",
    "UploadedFile",
]


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
Files = dict[str, "UploadedFile"]


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


@dataclass(frozen=True)
class UploadedFile:
    """A file the bot sent: a multipart part, or (Local Bot API) a path read from disk."""

    name: str
    filename: str | None
    data: bytes
    content_type: str | None = None
    path: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class Call:
    """One request, recorded once answered: decoded ``params`` (JSON fields parsed, ids as int),
    uploads in ``files``, arrival ``time`` (monotonic), and the answer (result or error_code)."""

    method: str
    params: Params
    files: Files
    time: float
    error_code: int | None = None  # set when the fake answered with an error
    result: Any = None

    def file(self, ref: str | Mapping[str, Any]) -> UploadedFile:
        """The upload behind a field name, an ``attach://``/path reference or an album item."""
        key = ref["media"] if isinstance(ref, Mapping) else ref
        if isinstance(self.params.get(key), str):
            key = self.params[key]
        key = key.removeprefix("attach://")
        if key not in self.files:
            raise KeyError(f"{self.method}: no uploaded file {ref!r}; files: {list(self.files)}")
        return self.files[key]

    def matches(self, method: str | None, match: Mapping[str, Any]) -> bool:
        if method is not None and self.method.lower() != method.lower():
            return False
        return all(_loose_equal(self.params.get(key), want) for key, want in match.items())


def _loose_equal(value: Any, want: Any) -> bool:
    """``chat_id=42`` matches "42" as well; a callable is a predicate."""
    if callable(want):
        return bool(want(value))
    return bool(value == want or (value is not None and str(value) == str(want)))


@dataclass
class Fault:
    method: str  # lower-case method name or "*"
    times: int
    error: ApiError | None = None
    delay: float = 0.0


def _decode(key: str, value: Any) -> Any:
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


def _is_local_path(ref: Any) -> bool:
    return isinstance(ref, str) and ref.startswith(("file://", "/"))


def _answer(method: Callable[[Params], Any]) -> Callable[[Params, Files], Awaitable[Any]]:
    async def handler(params: Params, files: Files) -> Any:
        return method(params)

    return handler


class _HtmlChecker(HTMLParser):
    """Telegram's HTML parse mode: known tags only, properly nested; collects the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in HTML_TAGS:
            raise _parse_error(f'Unsupported start tag "{tag}"')
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            raise _parse_error(f'Unmatched end tag "{tag}"')
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse_error(detail: str) -> ApiError:
    return ApiError(400, f"Bad Request: can't parse entities: {detail}")


def visible_text(text: str, parse_mode: Any) -> str:
    """The text Telegram shows; HTML is checked the way Telegram does (raises ApiError)."""
    if str(parse_mode).upper() != "HTML":
        return text
    checker = _HtmlChecker()
    checker.feed(text)
    checker.close()
    if checker.stack:
        raise _parse_error(f'Can\'t find end tag corresponding to start tag "{checker.stack[-1]}"')
    return "".join(checker.text)


def _field(params: Params, files: Files, key: str) -> Any:
    """The file reference in ``key``; ``curl -F photo=@x.jpg`` sends the part itself as "photo"."""
    return params.get(key) or (key if key in files else None)


def _check_png_dimensions(data: bytes) -> None:
    """sendPhoto: "The photo's width and height must not exceed 10000 in total. Width and
    height ratio must be at most 20" (core.telegram.org/bots/api#sendphoto, quoted in
    y-young/nazurin#10, 2021-02-14); refused with PHOTO_INVALID_DIMENSIONS (nickoala/telepot#135,
    2016-08-25). Checked for PNG uploads, whose size is in the IHDR chunk; others pass."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR":
        return
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if (
        not width
        or not height
        or width + height > 10000
        or max(width, height) > 20 * min(width, height)
    ):
        raise ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")


class FakeBotAPI:
    """``async with FakeBotAPI() as api:``; point the bot at ``api.base_url`` with ``api.token``.

    ``local=True`` (default) behaves like a Local Bot API server (``--local``), which takes
    multipart uploads and ``file:///abs/path`` references; ``local=False`` is the cloud API, which
    refuses paths. Uploads above ``upload_limit_mb`` (default 2000 local, 50 cloud) get a 413.
    """

    def __init__(
        self, token: str = DEFAULT_TOKEN, *, local: bool = True, upload_limit_mb: float = 0
    ) -> None:
        self.token = token
        self.local = local
        self.upload_limit = int((upload_limit_mb or (2000 if local else 50)) * MB)
        self.me = {"id": int(token.split(":")[0]), "is_bot": True, "first_name": "Test Bot"}
        self.me |= {"username": "test_bot", "can_join_groups": True}
        self.me |= {"can_read_all_group_messages": False, "supports_inline_queries": False}
        self.port = 0
        self.updates_served = 0
        self.poll_count = 0  # getUpdates requests received
        self.allowed_updates = DEFAULT_ALLOWED
        self.commands: dict[str, list[dict[str, Any]]] = {}  # "<scope json>:<language>" -> list
        self._updates: list[dict[str, Any]] = []
        self._update_id = 1
        self._ids = itertools.count(1)  # message, file and callback query ids
        self._files: dict[str, tuple[str, bytes]] = {}  # file_id -> (file_path, data)
        self._bot_messages: dict[int, list[dict[str, Any]]] = {}  # chat id -> sent messages
        self._callback_ids: set[str] = set()
        self._calls: list[Call] = []
        self._faults: list[Fault] = []
        self.recipients = Recipients()
        self.flood: FloodControl | None = None
        self.send_log = SendLog()  # every send request with its arrival time and answer
        self._unreachable: int | bool = False
        self._poll_generation = 0
        self._wakeup = asyncio.Event()
        self._changed = asyncio.Event()  # set whenever a call is recorded
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._handlers: dict[str, Callable[[Params, Files], Awaitable[Any]]] = {
            "getme": self._get_me,
            "getupdates": self._get_updates,
            "sendmessage": self._send_message,
            "sendphoto": self._send_photo,
            "sendmediagroup": self._send_media_group,
            "setmycommands": self._set_my_commands,
            "answercallbackquery": self._answer_callback_query,
            "getfile": self._get_file,
        }
        for method in MEDIA_METHODS:  # sendVideo, sendDocument, ...: one implementation
            self._handlers[method] = functools.partial(self._send_media, method)
        # setWebhook and updates delivered by POST: ecosystem_shared/testing/fake_webhook.py
        self.webhook = WebhookDelivery(self, ApiError)
        self._handlers["setwebhook"] = _answer(self.webhook.set_webhook)
        self._handlers["deletewebhook"] = _answer(self.webhook.delete_webhook)
        self._handlers["getwebhookinfo"] = _answer(lambda params: self.webhook.info())

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeBotAPI:
        app = web.Application(client_max_size=self.upload_limit + MB, middlewares=[self._outage])
        app.router.add_route("*", "/bot{token}/{method}", self._handle_method)
        app.router.add_route("GET", "/file/bot{token}/{path:.+}", self._handle_download)
        # handler_cancellation: the long poll of a killed bot must not linger.
        self._runner = web.AppRunner(
            app, access_log=None, shutdown_timeout=1.0, handler_cancellation=True
        )
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def stop(self) -> None:
        self._closing = True
        await self.webhook.stop()
        self._wakeup.set()  # release long polls so that shutdown does not wait for them
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeBotAPI:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ updates
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

    # ------------------------------------------------------------------ recipients
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

    # ------------------------------------------------------------------ calls
    def calls(self, method: str | None = None, **match: Any) -> list[Call]:
        return [call for call in self._calls if call.matches(method, match)]

    def clear_calls(self) -> None:
        self._calls.clear()

    async def wait_for_calls(
        self, method: str, count: int, timeout: float = 10.0, **match: Any
    ) -> list[Call]:
        """All matching calls, once there are at least ``count`` of them."""
        try:
            await self._wait(lambda: len(self.calls(method, **match)) >= count, timeout)
        except TimeoutError:
            seen = [(c.method, c.params) for c in self._calls if c.method != "getUpdates"]
            raise AssertionError(
                f"timed out after {timeout} s waiting for {count} x {method} {match};"
                f" last calls: {seen[-10:]}"
            ) from None
        return self.calls(method, **match)

    async def wait_for_call(self, method: str, timeout: float = 10.0, **match: Any) -> Call:
        return (await self.wait_for_calls(method, 1, timeout, **match))[0]

    async def wait_for_polling(self, timeout: float = 10.0, *, since: int = 0) -> None:
        """Return once more than ``since`` getUpdates requests have arrived (see poll_count)."""
        try:
            await self._wait(lambda: self.poll_count > since, timeout)
        except TimeoutError:
            raise AssertionError(f"no getUpdates request within {timeout} s") from None

    async def _wait(self, predicate: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()

    # ------------------------------------------------------------------ faults
    def fail_next(
        self,
        method: str,
        *,
        error_code: int = 429,
        retry_after: int = 1,
        description: str | None = None,
        times: int = 1,
    ) -> None:
        """The next ``times`` calls of ``method`` ("*" = any method) fail with this error."""
        error = ApiError(error_code, description, retry_after if error_code == 429 else None)
        self._faults.append(Fault(method.lower(), times, error=error))

    def delay_next(self, method: str, seconds: float, *, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` are answered ``seconds`` late (timeouts)."""
        self._faults.append(Fault(method.lower(), times, delay=seconds))

    def set_unreachable(self, unreachable: bool = True, *, status: int | None = None) -> None:
        """The API goes away: every connection is dropped, or answered with ``status`` (502)."""
        self._unreachable = status if unreachable and status else unreachable
        self._wakeup.set()  # pending long polls fail too

    def _take_fault(self, method: str) -> Fault | None:
        for fault in self._faults:
            if fault.method in ("*", method.lower()):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # ------------------------------------------------------------------ HTTP layer
    @web.middleware
    async def _outage(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not self._unreachable:
            response = await handler(request)
            if not self._unreachable:  # it may have gone away during a long poll
                return response
        if self._unreachable is True:
            if request.transport is not None:
                request.transport.abort()  # the client sees the connection dropped
            raise asyncio.CancelledError
        return ApiError(int(self._unreachable)).response()

    async def _handle_method(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return ApiError(401).response()
        name = request.match_info["method"]
        method = CANONICAL.get(name.lower(), name)  # method names are case-insensitive
        try:
            params, files = await self._read_body(request)
        except ApiError as error:  # e.g. 413: recorded without its body
            self._calls.append(Call(method, {}, {}, time.monotonic(), error_code=error.code))
            self._changed.set()
            return error.response()
        call = Call(method, params, files, time.monotonic())
        if method == "getUpdates":
            self.poll_count += 1
            self._changed.set()
        fault = self._take_fault(method)
        description = None
        try:
            if fault:
                await asyncio.sleep(fault.delay)
                if fault.error:
                    raise fault.error
            refusal = self._refusal(method, params)
            if refusal is not None:
                raise refusal
            await self._read_local_files(params, files)
            handler = self._handlers.get(method.lower())
            call.result = await handler(params, files) if handler else True
        except ApiError as error:
            call.error_code, description = error.code, error.description
            return error.response()
        finally:  # recorded once answered (or abandoned), so result and error_code are final
            self._calls.append(call)
            if method.lower() in SEND_METHODS:
                chat = chat_key(params.get("chat_id"))
                self.send_log.add(Send(method, chat, call.time, call.error_code, description))
            self._changed.set()
        return web.json_response({"ok": True, "result": call.result})

    async def _handle_download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return ApiError(401).response()
        for file_path, data in self._files.values():
            if file_path == request.match_info["path"]:
                return web.Response(body=data)
        return ApiError(404).response()

    async def _read_body(self, request: web.Request) -> tuple[Params, Files]:
        raw: dict[str, Any] = dict(request.query)
        files: Files = {}
        if request.content_type == "multipart/form-data":
            async for part in await request.multipart():
                if not isinstance(part, BodyPartReader) or part.name is None:
                    continue
                if part.filename is None:
                    raw[part.name] = await part.text()
                else:
                    data, kind = bytes(await part.read()), part.headers.get("Content-Type")
                    files[part.name] = UploadedFile(part.name, part.filename, data, kind)
        elif request.content_type == "application/json":
            body = await request.json()
            raw.update(body if isinstance(body, dict) else {})
        elif request.can_read_body:
            raw.update(await request.post())
        if sum(upload.size for upload in files.values()) > self.upload_limit:
            raise ApiError(413)
        return {key: _decode(key, value) for key, value in raw.items()}, files

    async def _read_local_files(self, params: Params, files: Files) -> None:
        """``file:///abs/path`` references: read from disk (local server) or refused (cloud)."""
        media = params.get("media")
        items = (
            [item for item in media if isinstance(item, dict)] if isinstance(media, list) else []
        )
        refs = [params.get(key) for key in FILE_FIELDS]
        refs += [item.get(key) for item in items for key in ("media", "thumbnail")]
        for ref in refs:
            if not isinstance(ref, str) or not _is_local_path(ref):
                continue
            if not self.local:
                raise ApiError(400, "Bad Request: wrong remote file identifier specified")
            path = Path(unquote(urlsplit(ref).path) if ref.startswith("file://") else ref)
            try:
                data = await asyncio.to_thread(path.read_bytes)
            except OSError:
                raise ApiError(400, f"Bad Request: file {path} not found") from None
            files[ref] = UploadedFile(ref, path.name, data, path=str(path))

    # ------------------------------------------------------------------ Telegram objects
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

    def _store_file(self, data: bytes, folder: str, name: str) -> str:
        """Keep ``data`` downloadable with getFile as ``folder/<file_id>_name``."""
        file_id = f"FILE{next(self._ids)}"
        path = f"{folder}/{file_id}_{name}"
        self._files[file_id] = (path, data)
        return file_id

    def _file_object(self, files: Files, ref: Any, folder: str) -> dict[str, Any]:
        """``ref``: ``attach://part``, a local path, a part name, or a file_id/URL sent again."""
        if not isinstance(ref, str) or not ref:
            raise ApiError(400, "Bad Request: there is no file in the request")
        upload = files.get(ref.removeprefix("attach://"))
        if upload is None and ref.startswith("attach://"):
            raise ApiError(400, f"Bad Request: can't parse InputMedia: media not found ({ref})")
        if upload is None:
            return {"file_id": ref, "file_unique_id": hashlib.sha256(ref.encode()).hexdigest()}
        file_id = self._store_file(upload.data, folder, upload.filename or "file")
        result = {"file_id": file_id, "file_unique_id": f"U{file_id}", "file_size": upload.size}
        return result | ({"file_name": upload.filename} if upload.filename else {})

    def _photo_sizes(self, files: Files, ref: Any) -> list[dict[str, Any]]:
        upload = files.get(ref.removeprefix("attach://")) if isinstance(ref, str) else None
        if upload is not None:
            _check_png_dimensions(upload.data)
        base = self._file_object(files, ref, "photos")
        base.pop("file_name", None)
        return [
            base | {"file_id": f"{base['file_id']}{suffix}", "width": side, "height": side}
            for suffix, side in (("-s", 90), ("-m", 320), ("", 800))
        ]

    @staticmethod
    def _caption(params: Mapping[str, Any]) -> str | None:
        if params.get("caption") is None:
            return None
        caption = visible_text(str(params["caption"]), params.get("parse_mode"))
        if len(caption) > MAX_CAPTION:
            raise ApiError(400, "Bad Request: message caption is too long")
        return caption

    @staticmethod
    def _markup(params: Params) -> Any:
        """Sent messages carry inline keyboards only (reply keyboards are not echoed)."""
        markup = params.get("reply_markup")
        return markup if isinstance(markup, dict) and "inline_keyboard" in markup else None

    # ------------------------------------------------------------------ methods
    async def _get_me(self, params: Params, files: Files) -> Any:
        return self.me

    async def _get_updates(self, params: Params, files: Files) -> Any:
        if self.webhook.active:
            raise self.webhook.conflict()
        self._poll_generation += 1
        generation = self._poll_generation
        self._wakeup.set()  # an older long poll still waiting gets a 409, as on Telegram
        offset, limit = int(params.get("offset") or 0), int(params.get("limit") or 100)
        if isinstance(params.get("allowed_updates"), list):
            self.allowed_updates = frozenset(params["allowed_updates"]) or DEFAULT_ALLOWED
        if offset:  # confirms everything before it; a negative offset keeps the last -offset
            self._updates = [
                u
                for i, u in enumerate(self._updates)
                if (
                    int(u["update_id"]) >= offset
                    if offset > 0
                    else i >= len(self._updates) + offset
                )
            ]
        deadline = time.monotonic() + float(params.get("timeout") or 0)
        while not self._closing and not self._unreachable:
            self._updates = [update for update in self._updates if self._deliverable(update)]
            remaining = deadline - time.monotonic()
            if self._updates or remaining <= 0:
                break
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                break
            if generation != self._poll_generation:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request;"
                    " make sure that only one bot instance is running",
                )
        if self._unreachable:
            return []  # the outage middleware answers instead
        batch = self._updates[: min(max(limit, 1), 100)]
        self.updates_served += len(batch)
        return batch

    def _deliverable(self, update: dict[str, Any]) -> bool:
        """Telegram drops update types the bot did not ask for (unknown types pass here)."""
        kinds = UPDATE_TYPES.intersection(update)
        return not kinds or bool(kinds & self.allowed_updates)

    async def _send_message(self, params: Params, files: Files) -> Any:
        text = visible_text(str(params.get("text") or ""), params.get("parse_mode"))
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        return self._bot_message(
            params.get("chat_id"), text=text, reply_markup=self._markup(params)
        )

    async def _send_photo(self, params: Params, files: Files) -> Any:
        photo = self._photo_sizes(files, _field(params, files, "photo"))
        caption, markup = self._caption(params), self._markup(params)
        return self._bot_message(
            params.get("chat_id"), photo=photo, caption=caption, reply_markup=markup
        )

    async def _send_media(self, method: str, params: Params, files: Files) -> Any:
        key, fixed = MEDIA_METHODS[method]
        media = self._file_object(files, _field(params, files, key), f"{key}s") | fixed
        media |= {
            name: params[name]
            for name in ("width", "height", "duration")
            if name in fixed and name in params
        }
        caption, markup = self._caption(params), self._markup(params)
        return self._bot_message(
            params.get("chat_id"), **{key: media}, caption=caption, reply_markup=markup
        )

    async def _send_media_group(self, params: Params, files: Files) -> Any:
        media = params.get("media")
        if not isinstance(media, list) or not media:
            raise ApiError(400, "Bad Request: media to send are not specified")
        if len(media) > 10:
            raise ApiError(400, "Bad Request: too much messages to send as an album")
        if len(media) < 2:
            raise ApiError(400, "Bad Request: an album must contain 2-10 media")
        group_id, messages = str(next(self._ids)), []
        for item in media:
            kind = item.get("type") if isinstance(item, dict) else None
            if kind not in ("photo", "video", "document", "audio"):
                raise ApiError(400, "Bad Request: can't parse InputMedia: unknown type")
            content: dict[str, Any] = {"media_group_id": group_id, "caption": self._caption(item)}
            if kind == "photo":
                content["photo"] = self._photo_sizes(files, item.get("media"))
            else:
                fixed = MEDIA_METHODS[f"send{kind}"][1]
                content[kind] = self._file_object(files, item.get("media"), f"{kind}s") | fixed
            messages.append(self._bot_message(params.get("chat_id"), **content))
        return messages

    async def _set_my_commands(self, params: Params, files: Files) -> Any:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise ApiError(400, "Bad Request: commands must be a list of at most 100 commands")
        for command in commands:
            name, text = str(command.get("command", "")), str(command.get("description", ""))
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name) or not 1 <= len(text) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
        scope = json.dumps(params.get("scope") or {"type": "default"}, sort_keys=True)
        self.commands[f"{scope}:{params.get('language_code') or ''}"] = commands
        return True

    async def _answer_callback_query(self, params: Params, files: Files) -> Any:
        if str(params.get("callback_query_id")) not in self._callback_ids:
            raise ApiError(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        if len(str(params.get("text") or "")) > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        return True

    async def _get_file(self, params: Params, files: Files) -> Any:
        file_id = str(params.get("file_id"))
        if file_id not in self._files:
            raise ApiError(400, "Bad Request: invalid file_id")
        file_path, data = self._files[file_id]
        return {
            "file_id": file_id,
            "file_unique_id": f"U{file_id}",
            "file_size": len(data),
            "file_path": file_path,
        }
