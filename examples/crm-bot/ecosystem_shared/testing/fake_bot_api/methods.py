"""The Bot API methods the fake implements: getMe, getUpdates, the sends, commands, files."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ecosystem_shared.testing.fake_bot_api.checks import caption, check_png_dimensions, visible_text
from ecosystem_shared.testing.fake_bot_api.fields import (
    DEFAULT_ALLOWED,
    MAX_TEXT,
    MEDIA_METHODS,
    ApiError,
    Params,
)
from ecosystem_shared.testing.fake_bot_api.recording import Files
from ecosystem_shared.testing.fake_bot_api.updates import Updates
from ecosystem_shared.testing.fake_webhook import WebhookDelivery

Handler = Callable[[Params, Files], Awaitable[Any]]


def _answer(method: Callable[[Params], Any]) -> Handler:
    async def handler(params: Params, files: Files) -> Any:
        return method(params)

    return handler


def _field(params: Params, files: Files, key: str) -> Any:
    """The file reference in ``key``; ``curl -F photo=@x.jpg`` sends the part itself as "photo"."""
    return params.get(key) or (key if key in files else None)


def _markup(params: Params) -> Any:
    """Sent messages carry inline keyboards only (reply keyboards are not echoed)."""
    markup = params.get("reply_markup")
    return markup if isinstance(markup, dict) and "inline_keyboard" in markup else None


class Methods(Updates):
    """Method handlers of a :class:`FakeBotAPI` (part of the server), by lower-case name."""

    commands: dict[str, list[dict[str, Any]]]  # "<scope json>:<language>" -> list
    webhook: WebhookDelivery
    _files: dict[str, tuple[str, bytes]]  # file_id -> (file_path, data)
    _poll_generation: int
    _closing: bool
    _unreachable: int | bool

    def _method_handlers(self) -> dict[str, Handler]:
        handlers: dict[str, Handler] = {
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
            handlers[method] = functools.partial(self._send_media, method)
        # setWebhook and updates delivered by POST: ecosystem_shared/testing/fake_webhook.py
        handlers["setwebhook"] = _answer(self.webhook.set_webhook)
        handlers["deletewebhook"] = _answer(self.webhook.delete_webhook)
        handlers["getwebhookinfo"] = _answer(lambda params: self.webhook.info())
        return handlers

    # ------------------------------------------------------------------ files
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
            check_png_dimensions(upload.data)
        base = self._file_object(files, ref, "photos")
        base.pop("file_name", None)
        return [
            base | {"file_id": f"{base['file_id']}{suffix}", "width": side, "height": side}
            for suffix, side in (("-s", 90), ("-m", 320), ("", 800))
        ]

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

    async def _send_message(self, params: Params, files: Files) -> Any:
        text = visible_text(str(params.get("text") or ""), params.get("parse_mode"))
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            raise ApiError(400, "Bad Request: message is too long")
        return self._bot_message(params.get("chat_id"), text=text, reply_markup=_markup(params))

    async def _send_photo(self, params: Params, files: Files) -> Any:
        photo = self._photo_sizes(files, _field(params, files, "photo"))
        return self._bot_message(
            params.get("chat_id"),
            photo=photo,
            caption=caption(params),
            reply_markup=_markup(params),
        )

    async def _send_media(self, method: str, params: Params, files: Files) -> Any:
        key, fixed = MEDIA_METHODS[method]
        media = self._file_object(files, _field(params, files, key), f"{key}s") | fixed
        media |= {
            name: params[name]
            for name in ("width", "height", "duration")
            if name in fixed and name in params
        }
        return self._bot_message(
            params.get("chat_id"),
            **{key: media},
            caption=caption(params),
            reply_markup=_markup(params),
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
            content: dict[str, Any] = {"media_group_id": group_id, "caption": caption(item)}
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
