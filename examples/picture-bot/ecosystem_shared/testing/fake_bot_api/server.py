"""The fake Bot API's HTTP server: routes, request bodies, outages, and the call record.

Its behaviour comes from the parts it is made of: :class:`Methods` (the method handlers),
:class:`RecipientControls`, :class:`Faults`, :class:`CallLog` and, through them,
:class:`Updates` (the queue and the objects tests push).
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from aiohttp import BodyPartReader, web

from ecosystem_shared.testing.fake_bot_api.faults import Faults
from ecosystem_shared.testing.fake_bot_api.fields import (
    CANONICAL,
    DEFAULT_ALLOWED,
    DEFAULT_TOKEN,
    FILE_FIELDS,
    MB,
    ApiError,
    Params,
    decode,
    is_local_path,
)
from ecosystem_shared.testing.fake_bot_api.methods import Methods
from ecosystem_shared.testing.fake_bot_api.recipients import RecipientControls
from ecosystem_shared.testing.fake_bot_api.recording import Call, CallLog, Files, UploadedFile
from ecosystem_shared.testing.fake_recipients import (
    SEND_METHODS,
    Recipients,
    Send,
    SendLog,
    chat_key,
)
from ecosystem_shared.testing.fake_webhook import WebhookDelivery


class FakeBotAPI(Methods, RecipientControls, Faults, CallLog):
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
        self.poll_count = 0
        self.allowed_updates = DEFAULT_ALLOWED
        self.commands = {}
        self._updates = []
        self._update_id = 1
        self._ids = itertools.count(1)
        self._files = {}
        self._bot_messages = {}
        self._callback_ids = set()
        self._calls = []
        self._faults = []
        self.recipients = Recipients()
        self.flood = None
        self.send_log = SendLog()
        self._unreachable = False
        self._poll_generation = 0
        self._wakeup = asyncio.Event()
        self._changed = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        # setWebhook and updates delivered by POST: ecosystem_shared/testing/fake_webhook.py
        self.webhook = WebhookDelivery(self, ApiError)
        self._handlers = self._method_handlers()

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
        return {key: decode(key, value) for key, value in raw.items()}, files

    async def _read_local_files(self, params: Params, files: Files) -> None:
        """``file:///abs/path`` references: read from disk (local server) or refused (cloud)."""
        media = params.get("media")
        items = (
            [item for item in media if isinstance(item, dict)] if isinstance(media, list) else []
        )
        refs = [params.get(key) for key in FILE_FIELDS]
        refs += [item.get(key) for item in items for key in ("media", "thumbnail")]
        for ref in refs:
            if not isinstance(ref, str) or not is_local_path(ref):
                continue
            if not self.local:
                raise ApiError(400, "Bad Request: wrong remote file identifier specified")
            path = Path(unquote(urlsplit(ref).path) if ref.startswith("file://") else ref)
            try:
                data = await asyncio.to_thread(path.read_bytes)
            except OSError:
                raise ApiError(400, f"Bad Request: file {path} not found") from None
            files[ref] = UploadedFile(ref, path.name, data, path=str(path))
