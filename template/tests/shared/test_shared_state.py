"""Shared state on a real redis-server, and the webhook's pieces against the fake Bot API.

Two limiters, storages or isolations on one Redis stand for two instances of a bot.
"""

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiogram import Bot, Dispatcher
from aiogram.exceptions import TelegramBadRequest, TelegramConflictError
from aiogram.fsm.storage.base import StorageKey
from aiohttp import ClientSession, web

from ecosystem_shared.config import SharedSettings
from ecosystem_shared.middlewares.rate_limit import RateLimitMiddleware, RedisRateLimiter, Verdict
from ecosystem_shared.shared_state import SharedState
from ecosystem_shared.testing.fake_bot_api import FakeBotAPI
from ecosystem_shared.testing.fake_webhook import SECRET_HEADER
from ecosystem_shared.testing.servers import RedisServer, free_port
from ecosystem_shared.testing.telegram_fixtures import bot_for
from ecosystem_shared.webhook import (
    HEALTH_PATH,
    build_app,
    ensure_webhook,
    serve_webhook,
    webhook_url,
)

SECRET = "0123456789abcdef" * 2
KEY = StorageKey(bot_id=42, chat_id=7, user_id=7)


@pytest_asyncio.fixture
async def states(redis_server: RedisServer) -> AsyncIterator[list[SharedState]]:
    """Two instances' shared state on one Redis."""
    pair = [SharedState(redis_server.url), SharedState(redis_server.url)]
    yield pair
    for state in pair:
        await state.close()
        await state.redis.aclose()


async def test_rate_limit_budget_is_shared_and_follows_the_local_rule(
    states: list[SharedState],
) -> None:
    first, second = (RedisRateLimiter(state.redis, 0.5) for state in states)
    assert (await first.check(42, 7))[0] is Verdict.ALLOW
    verdict, retry = await second.check(42, 7)  # another instance, same user
    assert verdict is Verdict.WARN and 0 < retry <= 0.5
    assert (await first.check(42, 7))[0] is Verdict.DROP
    assert (await second.check(42, 8))[0] is Verdict.ALLOW, "another user has his own budget"
    assert (await second.check(43, 7))[0] is Verdict.ALLOW, "another bot has its own budget"
    await asyncio.sleep(0.55)
    assert (await second.check(42, 7))[0] is Verdict.ALLOW
    assert await states[0].redis.pttl("ratelimit:42:7") > 0, "windows expire on their own"


async def test_redis_down_falls_back_to_memory_and_says_so_once(
    states: list[SharedState], redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    state = states[0]
    middleware = RateLimitMiddleware(
        60, "wait {seconds}", shared=RedisRateLimiter(state.redis, 60), health=state.health
    )
    bot = Bot("42:TEST-token")
    data: dict[str, Any] = {"bot": bot}
    assert await middleware._check(data, 7) == (Verdict.ALLOW, 0.0)
    await state.storage.set_state(KEY, "Form:name")
    redis_server.stop()
    with caplog.at_level(logging.INFO, logger="ecosystem_shared.shared_state"):
        # Memory takes over: the local limiter starts afresh, FSM and locks keep working.
        assert (await middleware._check(data, 7))[0] is Verdict.ALLOW
        assert (await middleware._check(data, 7))[0] is Verdict.WARN
        await state.storage.set_state(KEY, "Form:age")
        assert await state.storage.get_state(KEY) == "Form:age"
        for user in range(100):  # the local locks go with each user's update
            async with state.events_isolation.lock(
                StorageKey(bot_id=42, chat_id=user, user_id=user)
            ):
                pass
        assert len(state.events_isolation.fallback) == 0
        assert state.health.down
        redis_server.start()  # empty: the test server keeps nothing on disk
        await state.storage.set_state(KEY, "Form:done")
        assert await states[1].storage.get_state(KEY) == "Form:done", "shared again"
    messages = [record.getMessage() for record in caplog.records]
    assert sum("Redis unavailable" in message for message in messages) == 1, messages
    assert sum("Redis reachable again" in message for message in messages) == 1, messages
    assert state.health.down_since is None
    await bot.session.close()


async def test_fsm_is_shared_and_keyed_by_bot(states: list[SharedState]) -> None:
    first, second = states
    await first.storage.set_state(KEY, "Form:name")
    await first.storage.set_data(KEY, {"name": "Ann"})
    assert await second.storage.get_state(KEY) == "Form:name"
    assert await second.storage.get_data(KEY) == {"name": "Ann"}
    other_bot = StorageKey(bot_id=43, chat_id=7, user_id=7)
    assert await second.storage.get_state(other_bot) is None
    keys = sorted(repr(key) for key in await first.redis.keys("*"))
    assert keys == ["b'fsm:42:7:7:data'", "b'fsm:42:7:7:state'"]


async def test_one_users_updates_wait_for_each_other_across_instances(
    states: list[SharedState],
) -> None:
    order: list[str] = []

    async def handle(state: SharedState, name: str, key: StorageKey) -> None:
        async with state.events_isolation.lock(key):
            order.append(f"{name} in")
            await asyncio.sleep(0.3)
            order.append(f"{name} out")

    await asyncio.gather(handle(states[0], "a", KEY), handle(states[1], "b", KEY))
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])
    order.clear()
    other = StorageKey(bot_id=42, chat_id=8, user_id=8)
    await asyncio.gather(handle(states[0], "a", KEY), handle(states[1], "b", other))
    # Both enter before either leaves (which enters first is up to the event loop).
    assert sorted(order[:2]) == ["a in", "b in"], "different users are not serialised"


def webhook_settings(api: FakeBotAPI, **overrides: Any) -> SharedSettings:
    values: dict[str, Any] = {
        "BOT_TOKEN": api.token,
        "RUN_MODE": "webhook",
        "WEBHOOK_BASE_URL": "https://bots.example.com",
        "WEBHOOK_PATH": "/webhook/test-bot",
        "WEBHOOK_SECRET": SECRET,
    }
    return SharedSettings(**(values | overrides))


async def test_set_webhook_only_when_it_differs(fake_api: FakeBotAPI) -> None:
    bot = bot_for(fake_api)
    settings = webhook_settings(fake_api)
    try:
        assert await ensure_webhook(bot, settings, ["message", "callback_query"])
        call = fake_api.calls("setWebhook")[0]
        assert call.params["secret_token"] == SECRET
        assert call.params["url"] == webhook_url(settings)
        assert call.params["url"].startswith("https://bots.example.com/webhook/test-bot?s=")
        assert SECRET not in call.params["url"]
        assert call.params["allowed_updates"] == ["callback_query", "message"]
        # A second instance (or a restart) with the same values: no setWebhook.
        assert not await ensure_webhook(bot, settings, ["callback_query", "message"])
        # A new secret, new update types or a new URL: set again.
        rotated = webhook_settings(fake_api, WEBHOOK_SECRET="f" * 40)
        assert await ensure_webhook(bot, rotated, ["callback_query", "message"])
        assert fake_api.webhook.webhook is not None
        assert fake_api.webhook.webhook.secret_token == "f" * 40
        assert await ensure_webhook(bot, rotated, ["message"])
        assert len(fake_api.calls("setWebhook")) == 3
        # Polling is refused while the webhook is set, as on Telegram.
        with pytest.raises(TelegramConflictError, match="webhook is active"):
            await bot.get_updates()
        assert await bot.delete_webhook()
        assert await bot.get_updates() == []
    finally:
        await bot.session.close()


@pytest.mark.parametrize(
    ("url", "secret", "error"),
    [
        ("http://bots.example.com/hook", SECRET, "An HTTPS URL must be provided"),
        ("https://bots.example.com/hook", "bad secret!", "secret token contains unallowed"),
    ],
)
async def test_fake_refuses_what_telegram_refuses(
    fake_api: FakeBotAPI, url: str, secret: str, error: str
) -> None:
    bot = bot_for(fake_api)
    try:
        with pytest.raises(TelegramBadRequest, match=error):
            await bot.set_webhook(url, secret_token=secret)
        assert (await bot.get_webhook_info()).url == ""
    finally:
        await bot.session.close()


async def test_webhook_app_checks_the_secret_and_answers_health(fake_api: FakeBotAPI) -> None:
    bot = bot_for(fake_api)
    dp = Dispatcher()
    seen: list[int] = []

    @dp.message()
    async def record(message: Any) -> None:
        seen.append(message.message_id)
        if message.text == "boom":
            raise RuntimeError("handler failed")

    settings = webhook_settings(fake_api)
    runner = web.AppRunner(build_app(bot, dp, settings, lambda: {"redis": "ok"}))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = f"http://127.0.0.1:{port}"
    chat = {"id": 1, "type": "private"}
    message: dict[str, Any] = {"message_id": 5, "date": 0, "chat": chat, "text": "hi"}
    update = {"update_id": 1, "message": message}
    url = base + settings.WEBHOOK_PATH
    try:
        async with ClientSession() as http:
            async with http.get(base + HEALTH_PATH) as response:
                assert response.status == 200
                assert await response.json() == {"status": "ok", "bot": "Bot", "redis": "ok"}
            for headers in ({}, {SECRET_HEADER: "x" * 32}):
                async with http.post(url, json=update, headers=headers) as response:
                    assert response.status == 401
            assert seen == []
            headers = {SECRET_HEADER: SECRET}
            async with http.post(url, json=update, headers=headers) as response:
                assert response.status == 200
            assert seen == [5], "handled before the answer"
            # A failing handler: logged and acknowledged, or Telegram would resend it forever.
            message |= {"message_id": 6, "text": "boom"}
            async with http.post(url, json=update, headers=headers) as response:
                assert response.status == 200
            assert seen == [5, 6]
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("delete", [False, True])
async def test_shutdown_deletes_the_webhook_only_when_told(
    fake_api: FakeBotAPI, delete: bool
) -> None:
    bot = bot_for(fake_api)
    settings = webhook_settings(
        fake_api,
        WEBHOOK_LISTEN_PORT=free_port(),
        WEBHOOK_BASE_URL="http://127.0.0.1",
        WEBHOOK_DELETE_ON_SHUTDOWN=delete,
    )
    serving = asyncio.create_task(serve_webhook(bot, Dispatcher(), settings))
    try:
        await fake_api.wait_for_call("setWebhook", timeout=30)
        os.kill(os.getpid(), signal.SIGTERM)  # serve_webhook's own handler takes it
        await asyncio.wait_for(serving, 30)
    finally:
        serving.cancel()
        await bot.session.close()
    assert len(fake_api.calls("deleteWebhook")) == int(delete)
    assert fake_api.webhook.active is not delete
