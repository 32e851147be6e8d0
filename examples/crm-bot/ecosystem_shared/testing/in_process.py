"""The bot's real dispatcher in the test's process, started and stopped as ``run_bot`` does.

``in_process_bot`` (a fixture of the test kit) builds this bot's settings, services and dispatcher
with :func:`~ecosystem_shared.runtime.build_services` (plus the bot's own from
``<package>.services.bot_services``, as ``__main__`` passes them to ``run_bot``) and
:func:`~ecosystem_shared.runtime.build_dispatcher`, starts the database, analytics and the bot's
own services, and runs the routers' startup hooks with the data ``run_services`` gives them
(aiogram's ``start_polling`` passes the dispatcher, the bots and the workflow data); the shutdown
hooks and closing run at the end of the test. Its Bot talks HTTP to the test's
:class:`FakeBotAPI`; updates are fed straight into the dispatcher (no polling), so a test knows
each one was handled when ``feed`` returns.

Bots made by template 0.1.0 keep their routers at module level; each new dispatcher gets fresh
copies of those an earlier one took (:func:`replace_attached_routers`), so these tests pass on such
bot code too (aiogram attaches a router to one parent only).

Every exception a handler raises is recorded in :attr:`InProcessBot.errors` (whether an errors
handler took it or not): tests of hostile input require it to stay empty.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest
import pytest_asyncio
from aiogram import BaseMiddleware, Bot, Dispatcher, Router
from aiogram.types import ErrorEvent, TelegramObject

from ecosystem_shared.analytics import Analytics
from ecosystem_shared.config import SharedSettings
from ecosystem_shared.runtime import (
    BotServicesFactory,
    Services,
    build_dispatcher,
    build_services,
)
from ecosystem_shared.telegram import build_bot
from ecosystem_shared.testing.fake_bot_api import FakeBotAPI

__all__ = [
    "InProcessBot",
    "StartInProcess",
    "fresh_copy",
    "in_process_bot",
    "lifecycle_data",
    "replace_attached_routers",
]

CHANNEL = -1001234567890


def outside_urls(api: FakeBotAPI) -> dict[str, str]:
    """Settings that would reach outside services, pointed at the fake's server (which answers
    404 to these paths): a test never talks to the Wildberries CDN or a real external API."""
    return {
        "MEDIA_PHOTO_URL": api.base_url + "/cdn/{nm_id}/{n}.jpg",  # URL templates of the media
        "MEDIA_VIDEO_URL": api.base_url + "/cdn/{nm_id}.mp4",
        "EXTERNAL_API_BASE_URL": api.base_url + "/external-api",
    }


def lifecycle_data(dp: Dispatcher, bot: Bot) -> dict[str, Any]:
    """What startup and shutdown hooks receive when ``run_services`` starts polling: aiogram's
    ``Dispatcher.start_polling`` passes ``dispatcher``, ``bots``, the workflow data and ``bot``
    (``run_services`` adds no keyword arguments of its own)."""
    return {"dispatcher": dp, "bots": (bot,), **dp.workflow_data, "bot": bot}


class ErrorRecorder(BaseMiddleware):
    """Outer middleware on ``dp.errors`` (inside the shared reporter): records every error."""

    def __init__(self, errors: list[BaseException]) -> None:
        self.errors = errors

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        if isinstance(event, ErrorEvent):
            self.errors.append(event.exception)
        return await handler(event, data)


def fresh_copy(router: Router) -> Router:
    """A new, unattached router with ``router``'s handlers, filters, middlewares, startup and
    shutdown hooks and (copied) sub-routers."""
    copy = Router(name=router.name)
    for name, observer in router.observers.items():
        target = copy.observers[name]
        target.handlers.extend(observer.handlers)
        # Filters set on the whole observer (``router.message.filter(...)``).
        target._handler.filters = list(observer._handler.filters or [])
        for middleware in observer.outer_middleware:
            target.outer_middleware.register(middleware)
        for middleware in observer.middleware:
            target.middleware.register(middleware)
    copy.startup.handlers.extend(router.startup.handlers)
    copy.shutdown.handlers.extend(router.shutdown.handlers)
    for sub in router.sub_routers:
        copy.include_router(fresh_copy(sub))
    return copy


def replace_attached_routers(package: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Give ``build_router`` of a bot whose modules keep routers at module level (``router =
    Router()``, as bots made by template 0.1.0 do) unattached copies of those that an earlier
    dispatcher already took: aiogram attaches a router to one parent only, and raises "Router is
    already attached" on the second ``build_router()`` of the process. Bots with ``router()``
    factories have nothing to replace. Returns the replaced ``module.attribute`` names."""
    replaced: list[str] = []
    for name, module in list(sys.modules.items()):
        if module is None or not (name == package or name.startswith(package + ".")):
            continue
        for attribute, value in list(vars(module).items()):
            if isinstance(value, Router) and value.parent_router is not None:
                monkeypatch.setattr(module, attribute, fresh_copy(value))
                replaced.append(f"{name}.{attribute}")
    return replaced


@dataclass(repr=False)  # short in Hypothesis reports
class InProcessBot:
    api: FakeBotAPI
    bot: Bot
    services: Services
    dp: Dispatcher
    errors: list[BaseException] = field(default_factory=list)

    @property
    def analytics(self) -> Analytics:
        return self.services.analytics

    async def feed(self, update: dict[str, Any]) -> Any:
        """Handle one raw update (a dict as Telegram sends it) to the end."""
        return await self.dp.feed_raw_update(self.bot, update)

    def raised(self) -> str:
        """The tracebacks of the errors handlers raised ('' when none did)."""
        return "\n".join("".join(traceback.format_exception(error)) for error in self.errors)


class StartInProcess(Protocol):
    def __call__(
        self, *, routers: Sequence[Router] = (), **settings: Any
    ) -> Awaitable[InProcessBot]: ...


@contextlib.asynccontextmanager
async def serve(
    api: FakeBotAPI,
    settings: SharedSettings,
    routers: Sequence[Router],
    migrations: Sequence[Path],
    bot_services: BotServicesFactory[Any] | None = None,
) -> AsyncIterator[InProcessBot]:
    bot = build_bot(settings)
    services = build_services(settings, bot, migrations)
    if bot_services is not None:
        services.add_own(bot_services(settings, services))
    dp = build_dispatcher(services, routers)
    found = InProcessBot(api, bot, services, dp)
    dp.errors.outer_middleware(ErrorRecorder(found.errors))
    await services.db.start()
    try:
        assert services.db.available, "the test database is not reachable"
        await services.analytics.start()
        await services.start_own()
        lifecycle = lifecycle_data(dp, bot)
        await dp.emit_startup(**lifecycle)
        try:
            yield found
        finally:
            await dp.emit_shutdown(**lifecycle)
    finally:
        await services.close_own()
        await services.analytics.close()
        await services.db.close()
        await bot.session.close()


@pytest_asyncio.fixture
async def in_process_bot(
    database_url: str,
    bot_module: str,
    fake_api: FakeBotAPI,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> AsyncIterator[StartInProcess]:
    """``h = await in_process_bot(routers=[extra], LANGUAGE="ru")``: this bot's dispatcher with its
    routers from a fresh ``build_router(settings)`` (``routers`` are included before them),
    settings for the test (database, fake API, no rate limit, a digest channel) plus overrides.
    Each call builds another dispatcher; all are stopped at teardown."""
    for name in SharedSettings.model_fields:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    bot_settings = importlib.import_module(f"{bot_module}.settings")
    handlers = importlib.import_module(f"{bot_module}.handlers")
    # What run_bot(..., services=) gets in __main__; bots made before 0.3.0 have none.
    own_services = getattr(importlib.import_module(f"{bot_module}.services"), "bot_services", None)
    settings_cls: type[SharedSettings] = bot_settings.Settings
    async with contextlib.AsyncExitStack() as stack:

        async def start(*, routers: Sequence[Router] = (), **overrides: Any) -> InProcessBot:
            values: dict[str, Any] = {
                "BOT_TOKEN": fake_api.token,
                "TELEGRAM_API_BASE_URL": fake_api.base_url,
                "DATABASE_URL": database_url,
                "ANALYTICS_CHANNEL_ID": CHANNEL,
                "RATE_LIMIT_SECONDS": 0,
                "HEALTH_FILE": None,
                "LANGUAGE": "en",
            }
            outside = outside_urls(fake_api).items()
            values |= {name: url for name, url in outside if name in settings_cls.model_fields}
            settings = settings_cls(**(values | overrides))
            replace_attached_routers(bot_module, monkeypatch)
            all_routers = [*routers, handlers.build_router(settings)]
            return await stack.enter_async_context(
                serve(fake_api, settings, all_routers, bot_settings.MIGRATIONS, own_services)
            )

        yield start
