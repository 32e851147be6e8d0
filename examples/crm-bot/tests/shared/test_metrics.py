"""The bot's Prometheus metrics: names, labels, values against what the fake Bot API saw, bounded
cardinality, and where they are served (METRICS_PORT: polling, webhook, taken, out of range, off).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiogram import Router
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError, TelegramServerError
from aiogram.filters import Command
from aiogram.types import Message
from prometheus_client.parser import text_string_to_metric_families

from ecosystem_shared.config import SharedSettings
from ecosystem_shared.metrics import BotMetrics, RequestMetrics
from ecosystem_shared.runtime import Services, build_dispatcher, build_services
from ecosystem_shared.telegram import build_bot
from ecosystem_shared.testing.bot_process import BotProcess
from ecosystem_shared.testing.fake_bot_api import FakeBotAPI
from ecosystem_shared.testing.servers import free_port
from ecosystem_shared.testing.telegram_fixtures import StartBot
from ecosystem_shared.testing.waiting import wait_until

SLUG = "metrics-test-bot"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of an exposition: (name, labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    wanted = set(labels.items())
    return sum(v for (n, got), v in samples(text).items() if n == name and wanted <= got)


def boom_router() -> Router:
    router = Router(name="metrics-test")

    @router.message(Command("boom"))
    async def boom(message: Message) -> None:
        raise ValueError("handler failed on purpose")

    @router.message()
    async def echo(message: Message) -> None:
        await message.answer("ok")

    return router


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in SharedSettings.model_fields:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest_asyncio.fixture
async def services(fake_api: FakeBotAPI, clean_env: None) -> AsyncIterator[Services]:
    settings = SharedSettings(
        BOT_TOKEN=fake_api.token,
        TELEGRAM_API_BASE_URL=fake_api.base_url,
        HEALTH_FILE=None,
        RATE_LIMIT_SECONDS=3600,
        BOT_SLUG=SLUG,
        LANGUAGE="en",
        METRICS_PORT=free_port(),  # collected; nothing listens in-process (run_services does)
    )
    bot = build_bot(settings)
    built = build_services(settings, bot)
    try:
        yield built
    finally:
        await bot.session.close()


def message(api: FakeBotAPI, user_id: int, text: str) -> dict[str, Any]:
    """A private message update, as Telegram sends it (not queued: fed straight in)."""
    return {
        "update_id": user_id,
        "message": {
            "message_id": user_id,
            "date": 1_700_000_000,
            "chat": api.chat(user_id, "private"),
            "from": api.user(user_id),
            "text": text,
        },
    }


async def test_every_series_is_labelled_and_named_tgbot(services: Services) -> None:
    text = services.metrics.render().decode()
    names = {name for name, _ in samples(text)}
    assert names, text
    for name, labels in samples(text):
        assert dict(labels).get("bot") == SLUG, name
        assert name.startswith(("tgbot_", "process_", "python_")), name
    assert {"process_resident_memory_bytes", "python_info", "tgbot_start_timestamp_seconds"} <= (
        names
    )


async def test_updates_handlers_errors_throttling_and_requests(
    services: Services, fake_api: FakeBotAPI
) -> None:
    dp = build_dispatcher(services, [boom_router()])
    bot = services.bot
    await dp.feed_raw_update(bot, message(fake_api, 1, "hello"))
    await dp.feed_raw_update(bot, message(fake_api, 1, "again"))  # throttled: one per hour
    await dp.feed_raw_update(bot, message(fake_api, 2, "/boom"))
    text = services.metrics.render().decode()
    assert value(text, "tgbot_updates_total", type="message") == 3
    assert value(text, "tgbot_throttled_updates_total") == 1
    echo = "tests.shared.test_metrics.boom_router.<locals>.echo"
    boom = "tests.shared.test_metrics.boom_router.<locals>.boom"
    assert value(text, "tgbot_handled_updates_total", handler=echo) == 1
    assert value(text, "tgbot_handled_updates_total", handler=boom) == 1
    assert value(text, "tgbot_handler_errors_total", handler=boom, error="ValueError") == 1
    assert value(text, "tgbot_handler_duration_seconds_count", handler=echo) == 1
    # Two messages went out: the echo and the error reply (the warning is once per window and
    # went with the throttled message). The fake saw exactly what the counter says.
    sent = len(fake_api.calls("sendMessage"))
    assert sent >= 2
    assert value(text, "tgbot_api_requests_total", method="sendMessage", outcome="ok") == sent


async def test_request_outcomes_and_retry_after_waits(
    services: Services, fake_api: FakeBotAPI
) -> None:
    bot = services.bot
    fake_api.fail_next("sendMessage", error_code=429, retry_after=1)
    await bot.send_message(1, "after a 429")  # retried after 1 s
    fake_api.fail_next("sendMessage", error_code=403, description="Forbidden: bot was blocked")
    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(1, "blocked")
    fake_api.fail_next("sendMessage", error_code=400, description="Bad Request: chat not found")
    with pytest.raises(TelegramBadRequest):
        await bot.send_message(1, "nowhere")
    fake_api.fail_next("getMe", error_code=500, times=1)
    await bot.get_me()  # retried after a 5xx
    fake_api.fail_next("getMe", error_code=500, times=10)
    with pytest.raises(TelegramServerError):
        await bot.get_me()
    text = services.metrics.render().decode()

    def count(method: str, outcome: str) -> float:
        return value(text, "tgbot_api_requests_total", method=method, outcome=outcome)

    assert count("sendMessage", "retry_after") == 1
    assert count("sendMessage", "ok") == 1
    assert count("sendMessage", "forbidden") == 1
    assert count("sendMessage", "bad_request") == 1
    assert count("getMe", "server_error") == 5  # 1, then the 4 attempts of the retry middleware
    assert count("getMe", "ok") == 1
    assert value(text, "tgbot_api_retry_after_wait_seconds_total", method="sendMessage") == 1
    # Each attempt counted, as the fake saw it.
    assert value(text, "tgbot_api_request_duration_seconds_count", method="sendMessage") == len(
        fake_api.calls("sendMessage")
    )
    fake_api.set_unreachable()
    with pytest.raises(Exception, match=r"(?i)network|connect|server"):
        await bot.get_me()
    fake_api.set_unreachable(False)
    assert value(services.metrics.render().decode(), "tgbot_api_requests_total", outcome="network")


@pytest.mark.slow
async def test_ten_thousand_users_make_no_more_series_than_ten(
    services: Services, fake_api: FakeBotAPI
) -> None:
    """Labels never carry a user: the series count after 10,000 distinct users equals the count
    after 10 (each user sends a message, one is throttled, one handler fails)."""
    dp = build_dispatcher(services, [boom_router()])

    async def users(first: int, count: int) -> None:
        for user_id in range(first, first + count):
            await dp.feed_raw_update(services.bot, message(fake_api, user_id, f"hi {user_id}"))
            if user_id % 10 == 0:  # throttled, and a failing handler (ignored by the limiter)
                await dp.feed_raw_update(services.bot, message(fake_api, user_id, "/boom"))

    await users(1, 10)
    after_ten = services.metrics.series()
    await users(11, 10_000)
    text = services.metrics.render().decode()
    assert services.metrics.series() == after_ten
    assert value(text, "tgbot_updates_total") == 10_010 + 1_001
    assert value(text, "tgbot_throttled_updates_total") == 1_001


async def test_without_metrics_port_nothing_is_collected(
    fake_api: FakeBotAPI, clean_env: None
) -> None:
    settings = SharedSettings(
        BOT_TOKEN=fake_api.token, TELEGRAM_API_BASE_URL=fake_api.base_url, HEALTH_FILE=None
    )
    bot = build_bot(settings)
    try:
        services = build_services(settings, bot)
        dp = build_dispatcher(services, [boom_router()])
        await dp.feed_raw_update(bot, message(fake_api, 1, "hello"))
        assert fake_api.calls("sendMessage")
        assert not services.metrics.collecting
        assert not any(isinstance(m, RequestMetrics) for m in bot.session.middleware[:])
        text = services.metrics.render().decode()
        assert value(text, "tgbot_updates_total") == 0
        assert value(text, "tgbot_api_requests_total") == 0
    finally:
        await bot.session.close()


def test_bot_label_defaults_to_the_webhook_path(clean_env: None) -> None:
    settings = SharedSettings(BOT_TOKEN="1:x", WEBHOOK_PATH="/webhook/picture-bot")
    assert settings.bot_label == "picture-bot"
    assert SharedSettings(BOT_TOKEN="1:x", BOT_SLUG="shop").bot_label == "shop"
    assert BotMetrics("shop", process=False).series() > 0


# ---------------------------------------------------------------- served by the bot process


def listening_ports(pid: int) -> set[int]:
    """TCP ports the process listens on (its sockets in /proc/net/tcp* in state LISTEN)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def exit_code(bot: BotProcess) -> int | None:
    async def probe() -> int | None:
        return bot.returncode

    code = await wait_until(probe, lambda code: code is not None, timeout=30, what="its exit")
    await bot.stop()  # reads the rest of its output
    return code


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain")
        return await response.text()


@pytest.mark.slow
async def test_polling_bot_serves_metrics_and_health(
    bot_process_factory: StartBot, fake_api: FakeBotAPI
) -> None:
    port = free_port()
    bot = await bot_process_factory(METRICS_PORT=port, RATE_LIMIT_SECONDS=0, BOT_SLUG=SLUG)
    base = f"http://127.0.0.1:{port}"
    fake_api.push_message("hello", user_id=7)
    await fake_api.wait_for_call("sendMessage", chat_id=7)

    def polled_and_sent(text: str) -> bool:
        sent = len([c for c in fake_api.calls("sendMessage") if c.error_code is None])
        ok = value(text, "tgbot_api_requests_total", method="sendMessage", outcome="ok")
        return ok == sent and value(text, "tgbot_updates_total") >= 1

    text = await wait_until(
        lambda: scrape(base + "/metrics"), polled_and_sent, timeout=20, what="sendMessage counted"
    )
    assert value(text, "tgbot_polling_last_success_timestamp_seconds") > 0
    assert value(text, "tgbot_updates_total", type="message", bot=SLUG) == 1
    async with aiohttp.ClientSession() as http, http.get(base + "/healthz") as response:
        assert response.status == 200
        assert (await response.json())["status"] == "ok"
    assert bot.pid is not None and port in listening_ports(bot.pid)


@pytest.mark.slow
async def test_metrics_off_listens_on_nothing(bot_process_factory: StartBot) -> None:
    bot = await bot_process_factory(METRICS_PORT=0)
    assert bot.pid is not None
    assert listening_ports(bot.pid) == set()


@pytest.mark.slow
async def test_taken_metrics_port_stops_the_bot_with_a_clear_error(
    bot_process_factory: StartBot,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        bot = await bot_process_factory(METRICS_PORT=port, wait_polling=False)
        assert await exit_code(bot) == 2
    assert re.search(rf"METRICS_PORT {port} on METRICS_HOST 127.0.0.1 cannot be", bot.output)
    assert "Traceback" not in bot.output


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["65536", "-1", "http"])
async def test_bad_metrics_port_is_a_configuration_error(
    bot_process_factory: StartBot, bad: str
) -> None:
    bot = await bot_process_factory(METRICS_PORT=bad, wait_polling=False)
    assert await exit_code(bot) == 2
    assert "Configuration error: METRICS_PORT:" in bot.output


@pytest.mark.slow
async def test_webhook_bot_serves_metrics_on_its_server(
    bot_process_factory: StartBot, fake_api: FakeBotAPI
) -> None:
    webhook_port, metrics_port = free_port(), free_port()
    env: dict[str, Any] = {
        "RUN_MODE": "webhook",
        "WEBHOOK_BASE_URL": f"http://127.0.0.1:{webhook_port}",
        "WEBHOOK_SECRET": "s" * 40,
        "WEBHOOK_LISTEN_PORT": webhook_port,
        "RATE_LIMIT_SECONDS": 0,
        "BOT_SLUG": SLUG,
    }
    same = await bot_process_factory(**env, METRICS_PORT=webhook_port)
    text = await scrape(f"http://127.0.0.1:{webhook_port}/metrics")
    assert value(text, "tgbot_api_requests_total", method="setWebhook", outcome="ok") == 1
    assert "tgbot_polling_last_success_timestamp_seconds" not in text  # no getUpdates to await
    assert same.pid is not None and listening_ports(same.pid) == {webhook_port}
    await same.stop()
    other = await bot_process_factory(**env, METRICS_PORT=metrics_port)
    fake_api.push_message("hello", user_id=8)
    await fake_api.wait_for_call("sendMessage", chat_id=8)

    text = await wait_until(
        lambda: scrape(f"http://127.0.0.1:{metrics_port}/metrics"),
        lambda text: value(text, "tgbot_updates_total", type="message") == 1,
        timeout=20,
        what="the update counted",
    )
    assert value(text, "tgbot_api_requests_total", method="sendMessage", outcome="ok") == 1
    assert other.pid is not None and listening_ports(other.pid) == {webhook_port, metrics_port}
