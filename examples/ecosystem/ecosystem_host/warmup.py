"""The libraries' hot paths run once in the host's parent before the fork: parsing an update,
dispatching it through a router and filters, building a request, reading a response, a settings
class, a scheduler trigger. Lazily built caches and specialised bytecode are then made once and
shared, rather than once per child.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

_WARMUP_TOKEN = "42:warm-up-token-that-is-never-sent-anywhere"
_WARMUP_UPDATES = 60  # enough executions for CPython to specialise the hot bytecode


def _update(update_id: int, text: str) -> dict[str, Any]:
    user = {"id": 7 + update_id % 5, "is_bot": False, "first_name": "Warm", "language_code": "en"}
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1_700_000_000,
            "chat": {"id": user["id"], "type": "private", "first_name": "Warm"},
            "from": user,
            "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}],
        },
    }


async def _aiogram_warmup() -> None:
    """Poll a loopback Bot API (aiohttp server in this process) and answer updates: the same
    client, dispatcher, filter and request code the bots run, executed before the fork."""
    from aiogram import Bot, Dispatcher, Router
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.filters import Command, CommandStart
    from aiogram.types import Message
    from aiohttp import web

    pending = [_update(n, "/start" if n % 3 else "/help x") for n in range(1, _WARMUP_UPDATES)]
    answered: list[int] = []
    stopping: list[asyncio.Task[None]] = []
    dispatcher = Dispatcher()

    async def api(request: web.Request) -> web.Response:
        method = request.match_info["method"].lower()
        data = dict(await request.post())
        result: Any = True
        if method == "getme":
            result = {"id": 42, "is_bot": True, "first_name": "Warm", "username": "warm_bot"}
        elif method == "getupdates":
            offset = int(str(data.get("offset", 0) or 0))
            result = [u for u in pending if u["update_id"] >= offset][:10]
            if not result and len(answered) >= len(pending) and not stopping:
                # Not awaited here: stop_polling waits for this very request to finish.
                stopping.append(asyncio.create_task(dispatcher.stop_polling()))
        elif method == "sendmessage":
            chat = int(str(data["chat_id"]))
            answered.append(chat)
            result = {
                "message_id": 1000 + len(answered),
                "date": 1_700_000_000,
                "chat": {"id": chat, "type": "private"},
                "text": data.get("text", ""),
            }
        return web.json_response({"ok": True, "result": result})

    app = web.Application()
    app.router.add_post("/bot{token}/{method}", api)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    router = Router()

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        await message.answer(f"<b>Hi</b>, {message.chat.id}!", parse_mode="HTML")

    @router.message(Command("help"))
    async def help_(message: Message) -> None:
        await message.answer("help")

    dispatcher.include_router(router)
    session = AiohttpSession(api=TelegramAPIServer.from_base(f"http://127.0.0.1:{port}"))
    bot = Bot(_WARMUP_TOKEN, session=session)
    try:
        await asyncio.wait_for(
            dispatcher.start_polling(bot, polling_timeout=0, handle_signals=False), 20
        )
    finally:
        await bot.session.close()
        await runner.cleanup()
    if len(answered) < len(pending):
        raise RuntimeError(f"aiogram warm-up answered {len(answered)}/{len(pending)} updates")


def _settings_warmup() -> None:
    """A settings class with the field kinds bots use, validated from a .env and the env."""
    import datetime
    import os
    import tempfile
    from pathlib import Path
    from typing import Annotated, Literal

    from pydantic import Field, SecretStr, field_validator
    from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

    class WarmSettings(BaseSettings):
        model_config = SettingsConfigDict(
            env_file=".env", extra="ignore", case_sensitive=True, validate_default=True
        )
        WARM_TOKEN: SecretStr = SecretStr("x")
        WARM_NAME: str = Field(default="Bot", min_length=1, max_length=64)
        WARM_LANGUAGE: Literal["ru", "en"] = "ru"
        WARM_URL: SecretStr | None = None
        WARM_SIZE: int = Field(default=1, ge=0, le=50)
        WARM_SECONDS: float = Field(default=1.0, gt=0)
        WARM_FLAG: bool = True
        WARM_CHAT: int | None = Field(default=None, ge=-(2**63), lt=2**63)
        WARM_BASE: str | None = None
        WARM_TIME: datetime.time = datetime.time(0, 0)
        WARM_FILE: Path | None = Path("/tmp/warm")
        WARM_IDS: Annotated[frozenset[int], NoDecode] = frozenset()

        @field_validator("WARM_BASE", mode="before")
        @classmethod
        def _empty(cls, value: object) -> object:
            return None if value == "" else value

    class WarmChild(WarmSettings):
        WARM_NAME: str = "Warm"

    previous = os.getcwd()
    with tempfile.TemporaryDirectory() as directory:
        Path(directory, ".env").write_text("WARM_BASE=\nWARM_SIZE=2\n", encoding="utf-8")
        os.chdir(directory)
        try:
            WarmChild()
        finally:
            os.chdir(previous)


def _scheduler_warmup() -> None:
    """A started and stopped AsyncIOScheduler with a daily job, as a bot's digest schedule:
    its executor module and start path are then the parent's, not imported in every child."""
    from apscheduler.schedulers.asyncio import (  # type: ignore[import-untyped,unused-ignore]
        AsyncIOScheduler,
    )
    from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped,unused-ignore]

    async def job() -> None:
        pass

    async def run() -> None:
        scheduler = AsyncIOScheduler(timezone="UTC")
        scheduler.add_job(job, CronTrigger(hour=0, minute=0, timezone="UTC"), id="warm-up")
        scheduler.start()
        await asyncio.sleep(0)
        scheduler.shutdown(wait=False)

    _in_fresh_loop(run())


def _run_aiogram_warmup() -> None:
    _in_fresh_loop(_aiogram_warmup())


def _in_fresh_loop(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` in a loop of its own, closed afterwards: no loop is left for the children."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(coro)
    finally:
        loop.close()
        asyncio.set_event_loop(None)


def warm_up() -> list[str]:
    """Run the libraries' hot paths once; returns what could not be warmed (and why)."""
    skipped = []
    steps = {
        "aiogram": _run_aiogram_warmup,
        "pydantic-settings": _settings_warmup,
        "apscheduler": _scheduler_warmup,
    }
    for name, step in steps.items():
        try:
            step()
        except Exception as error:  # noqa: BLE001 - the bots run without the warm-up
            skipped.append(f"{name}: {type(error).__name__}: {error}")
    return skipped
