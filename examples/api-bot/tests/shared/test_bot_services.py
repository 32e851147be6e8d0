"""A bot's own services (``run_bot(..., services=)``): handlers get them by parameter name, a
name the shared services use is refused, start runs each one's ``start()`` in order (a failure
names the service), and shutdown closes each one, the last added first."""

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiogram import F, Router
from aiogram.types import Message

from ecosystem_shared.config import SharedSettings
from ecosystem_shared.runtime import Services, build_dispatcher, build_services
from ecosystem_shared.telegram import build_bot
from ecosystem_shared.testing.fake_bot_api import FakeBotAPI


class Greeter:
    def __init__(self, closed: list[str], name: str) -> None:
        self.closed, self.name = closed, name

    async def close(self) -> None:
        self.closed.append(self.name)


class SyncClosing(Greeter):
    def close(self) -> None:  # type: ignore[override]  # a plain close() is called as well
        self.closed.append(self.name)


class Starting(Greeter):
    async def start(self) -> None:
        self.closed.append(f"started {self.name}")


class SyncStarting(Greeter):
    def start(self) -> None:
        self.closed.append(f"started {self.name}")


class NotStarting(Greeter):
    async def start(self) -> None:
        raise OSError("no route map")


class Broken(Greeter):
    async def close(self) -> None:
        self.closed.append(self.name)
        raise ConnectionError("already gone")


@pytest_asyncio.fixture
async def services(
    fake_api: FakeBotAPI, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> AsyncIterator[Services]:
    for name in SharedSettings.model_fields:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    settings = SharedSettings(
        BOT_TOKEN=fake_api.token,
        TELEGRAM_API_BASE_URL=fake_api.base_url,
        HEALTH_FILE=None,
        RATE_LIMIT_SECONDS=0,
        LANGUAGE="en",
    )
    bot = build_bot(settings)
    try:
        yield build_services(settings, bot)
    finally:
        await bot.session.close()


def greeting_router() -> Router:
    router = Router(name="greeting")

    @router.message(F.text == "hi")
    async def greet(message: Message, greeter: Greeter) -> None:
        await message.answer(f"hello from {greeter.name}")

    return router


async def test_handlers_get_the_bot_services_by_name(
    services: Services, fake_api: FakeBotAPI
) -> None:
    services.add_own({"greeter": Greeter([], "the greeter")})
    dp = build_dispatcher(services, [greeting_router()])
    update: dict[str, Any] = {
        "update_id": 1,
        "message": {
            "message_id": 1,
            "date": 1_700_000_000,
            "chat": fake_api.chat(71, "private"),
            "from": fake_api.user(71),
            "text": "hi",
        },
    }
    await dp.feed_raw_update(services.bot, update)
    [reply] = fake_api.calls("sendMessage", chat_id=71)
    assert reply.params["text"] == "hello from the greeter"


@pytest.mark.parametrize("name", ["db", "analytics", "settings", "bot", "state"])
def test_a_name_the_shared_services_use_is_refused(services: Services, name: str) -> None:
    with pytest.raises(ValueError, match=rf"may not be named {name}: already taken"):
        services.add_own({"mine": object(), name: object()})
    assert services.own == {}  # nothing half-added


async def test_shutdown_closes_each_last_first_despite_a_failure(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    closed: list[str] = []
    services.add_own({"first": Greeter(closed, "first"), "plain": object()})
    services.add_own({"broken": Broken(closed, "broken"), "sync": SyncClosing(closed, "sync")})
    with caplog.at_level(logging.INFO):
        await services.close_own()
    assert closed == ["sync", "broken", "first"]
    assert "Closed the bot's services: sync, first" in caplog.text
    assert "Closing the bot service 'broken' failed" in caplog.text
    assert "already gone" in caplog.text


async def test_start_runs_each_start_in_order(services: Services) -> None:
    events: list[str] = []
    services.add_own({"a": Starting(events, "a"), "plain": object()})
    services.add_own({"b": SyncStarting(events, "b")})
    services.add_own({"c": Starting(events, "c"), "closing": Greeter(events, "closing")})
    await services.start_own()
    assert events == ["started a", "started b", "started c"]


async def test_a_service_that_cannot_start_stops_the_start_by_its_name(
    services: Services,
) -> None:
    events: list[str] = []
    services.add_own({"first": Starting(events, "first"), "source": NotStarting(events, "src")})
    services.add_own({"later": Starting(events, "later")})
    with pytest.raises(RuntimeError, match=r"service 'source' could not start: no route map"):
        await services.start_own()
    assert events == ["started first"]  # nothing after the failure was started
    await services.close_own()  # what the runtime does next: every service is closed
    assert events == ["started first", "later", "src", "first"]
