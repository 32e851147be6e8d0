"""pytest fixtures: a fake Bot API per test and the bot started as a real process against it.

``fake_api`` takes options from a marker: ``@pytest.mark.fake_api(local=False)`` is the cloud
API (refuses local file paths, 50 MB uploads). ``bot_process_factory`` needs a ``bot_module``
fixture naming the package run with ``python -m`` (the generated ``tests/conftest.py`` has it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol

import pytest
import pytest_asyncio
from aiogram import Bot
from aiogram.client.telegram import TelegramAPIServer

from ecosystem_shared.telegram import TelegramSession
from ecosystem_shared.testing.bot_process import BotProcess
from ecosystem_shared.testing.fake_bot_api import FakeBotAPI

__all__ = ["StartBot", "bot_for", "bot_process_factory", "fake_api", "pytest_configure"]


def bot_for(api: FakeBotAPI, *, is_local: bool = False, token: str | None = None) -> Bot:
    """An aiogram ``Bot`` talking to ``api`` (its token unless ``token`` is given), with the
    bots' own session class; close it with ``await bot.session.close()``."""
    server = TelegramAPIServer.from_base(api.base_url, is_local=is_local)
    return Bot(token or api.token, session=TelegramSession(api=server))


class StartBot(Protocol):
    def __call__(self, *, wait_polling: bool = True, **env: Any) -> Awaitable[BotProcess]: ...


def pytest_configure(config: pytest.Config) -> None:
    """Registers the markers (re-exported by the plugin module so that pytest calls it)."""
    config.addinivalue_line(
        "markers", "fake_api(**options): FakeBotAPI options for the test, e.g. local=False"
    )
    config.addinivalue_line(
        "markers",
        "slow: process-level test taking seconds (several bot processes, outages, real time);"
        " left out of the default run by pyproject's addopts, run with -m 'slow or not slow'",
    )


@pytest_asyncio.fixture
async def fake_api(request: pytest.FixtureRequest) -> AsyncIterator[FakeBotAPI]:
    """A started FakeBotAPI (see its docstring); options from ``@pytest.mark.fake_api(...)``."""
    marker = request.node.get_closest_marker("fake_api")
    async with FakeBotAPI(**(marker.kwargs if marker else {})) as api:
        yield api


@pytest_asyncio.fixture
async def bot_process_factory(
    fake_api: FakeBotAPI, bot_module: str, request: pytest.FixtureRequest
) -> AsyncIterator[StartBot]:
    """``bot = await bot_process_factory(DATABASE_URL=..., RATE_LIMIT_SECONDS="0")``.

    Starts ``python -m <bot_module>`` against ``fake_api`` and returns once it polls; every bot
    started is stopped with SIGTERM at teardown (a bot that does not exit fails the test).
    """
    started: list[BotProcess] = []
    rootdir = request.config.rootpath

    async def start_bot(*, wait_polling: bool = True, **env: Any) -> BotProcess:
        bot = BotProcess(bot_module, rootdir, fake_api, {k: str(v) for k, v in env.items()})
        started.append(bot)
        return await bot.start(wait_polling=wait_polling)

    yield start_bot
    errors = []
    for bot in reversed(started):
        try:
            if bot.pid is not None:
                await bot.stop()
        except AssertionError as error:
            errors.append(str(error))
    if errors:
        pytest.fail("\n\n".join(errors), pytrace=False)
