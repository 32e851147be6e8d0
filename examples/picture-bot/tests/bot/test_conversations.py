"""The bot as it runs in production: a process talking HTTP to a (fake) Bot API, real PostgreSQL."""

import asyncio
import signal
from typing import Any

import pytest

from ecosystem_shared.testing.fake_bot_api import Call, FakeBotAPI
from ecosystem_shared.testing.telegram_fixtures import StartBot
from ecosystem_shared.testing.waiting import fetch, wait_for_rows

CHANNEL = -1001234567890
FAST: dict[str, Any] = {"ANALYTICS_FLUSH_SECONDS": "0.1", "ANALYTICS_CHANNEL_ID": CHANNEL}


def channel_messages(fake_api: FakeBotAPI) -> list[Call]:
    return fake_api.calls("sendMessage", chat_id=CHANNEL)


@pytest.mark.slow
async def test_start_registers_new_user_and_notifies_once(
    fake_api: FakeBotAPI, bot_process_factory: StartBot, database_url: str
) -> None:
    await bot_process_factory(DATABASE_URL=database_url, RATE_LIMIT_SECONDS="0", **FAST)
    fake_api.push_message(
        "/start",
        user_id=501,
        username="alice",
        first_name="Alice",
        last_name="Smith",
        language_code="ru",
    )
    reply = await fake_api.wait_for_call("sendMessage", chat_id=501)
    assert "Alice" in reply.params["text"]
    await fake_api.wait_for_call("sendMessage", chat_id=CHANNEL)

    users = await wait_for_rows(database_url, "SELECT * FROM shared.users WHERE telegram_id = 501")
    assert (users[0]["username"], users[0]["first_name"], users[0]["last_name"]) == (
        "alice",
        "Alice",
        "Smith",
    )
    assert users[0]["language_code"] == "ru"
    events = await wait_for_rows(
        database_url,
        "SELECT bot_name FROM shared.analytics_events"
        " WHERE telegram_id = 501 AND event_type = 'user_start'",
    )
    assert events[0]["bot_name"] == "Picture Bot"
    first_seen = users[0]["first_seen"]

    # Again, later: a reply, no second notification, last_seen moves, first_seen stays.
    await asyncio.sleep(0.3)
    fake_api.push_message("/start", user_id=501, username="alice", first_name="Alice")
    await fake_api.wait_for_calls("sendMessage", 2, chat_id=501)
    await wait_for_rows(
        database_url,
        "SELECT 1 FROM shared.analytics_events"
        " WHERE telegram_id = 501 AND event_type = 'user_start'",
        count=2,
    )
    await wait_for_rows(
        database_url,
        "SELECT 1 FROM shared.users WHERE telegram_id = 501 AND last_seen > $1",
        first_seen,
    )
    again = await fetch(database_url, "SELECT first_seen FROM shared.users WHERE telegram_id = 501")
    assert again[0]["first_seen"] == first_seen
    assert len(channel_messages(fake_api)) == 1


@pytest.mark.slow
async def test_burst_is_rate_limited(
    fake_api: FakeBotAPI, bot_process_factory: StartBot, database_url: str
) -> None:
    await bot_process_factory(DATABASE_URL=database_url, RATE_LIMIT_SECONDS="30", **FAST)
    for _ in range(10):
        fake_api.push_message("/help", user_id=777)
    await fake_api.wait_for_call("sendMessage", chat_id=777)
    await asyncio.sleep(1.5)  # give the other nine every chance to be (wrongly) answered
    replies = fake_api.calls("sendMessage", chat_id=777)
    assert 1 <= len(replies) <= 2, [call.params["text"] for call in replies]
    # Another user is not affected.
    fake_api.push_message("/help", user_id=778)
    await fake_api.wait_for_call("sendMessage", chat_id=778)


@pytest.mark.slow
async def test_failing_handler_gets_friendly_error_and_bot_keeps_serving(
    fake_api: FakeBotAPI, bot_process_factory: StartBot, database_url: str
) -> None:
    await bot_process_factory(DATABASE_URL=database_url, RATE_LIMIT_SECONDS="0", **FAST)
    # The reply to /help fails with a 400: the handler raises TelegramBadRequest.
    fake_api.fail_next("sendMessage", error_code=400, description="Bad Request: no such chat")
    fake_api.push_message("/help", user_id=901)
    calls = await fake_api.wait_for_calls("sendMessage", 2, chat_id=901)
    error_text = calls[-1].params["text"]
    assert error_text and "/help" not in error_text
    rows = await wait_for_rows(
        database_url,
        "SELECT event_data FROM shared.analytics_events"
        " WHERE event_type = 'error' AND telegram_id = 901",
    )
    assert "TelegramBadRequest" in rows[0]["event_data"]
    fake_api.push_message("/help", user_id=902)
    await fake_api.wait_for_call("sendMessage", chat_id=902)


@pytest.mark.slow
async def test_odd_updates_do_not_crash(
    fake_api: FakeBotAPI, bot_process_factory: StartBot, database_url: str
) -> None:
    bot = await bot_process_factory(DATABASE_URL=database_url, RATE_LIMIT_SECONDS="1", **FAST)
    fake_api.push_channel_post("/start")
    fake_api.push_anonymous_admin_message("/start", chat_id=-100777)
    fake_api.push_edited_message("/start edited", user_id=31)
    fake_api.push_callback_query("\x00junk\u202e' OR 1=1 --", user_id=32)
    fake_api.push_my_chat_member(user_id=33, new_status="kicked")
    fake_api.push_raw({"update_id": 10_000_001, "some_future_update": {"x": 1}})
    fake_api.push_message("/start", user_id=34, first_name="After")
    await fake_api.wait_for_call("sendMessage", chat_id=34)
    assert bot.returncode is None
    assert "Traceback" not in bot.output


@pytest.mark.slow
async def test_runs_without_database(fake_api: FakeBotAPI, bot_process_factory: StartBot) -> None:
    bot = await bot_process_factory(DATABASE_URL="", **FAST)
    fake_api.push_message("/start", user_id=41)
    await fake_api.wait_for_call("sendMessage", chat_id=41)
    assert bot.output.lower().count("analytics") >= 1


@pytest.mark.slow
async def test_runs_with_unreachable_database(
    fake_api: FakeBotAPI, bot_process_factory: StartBot
) -> None:
    await bot_process_factory(DATABASE_URL="postgresql://bot:pw@127.0.0.1:9/nowhere", **FAST)
    fake_api.push_message("/start", user_id=42)
    await fake_api.wait_for_call("sendMessage", chat_id=42)


@pytest.mark.slow
async def test_sigterm_exits_cleanly(
    fake_api: FakeBotAPI, bot_process_factory: StartBot, database_url: str
) -> None:
    bot = await bot_process_factory(DATABASE_URL=database_url, **FAST)
    fake_api.push_message("/start", user_id=51)
    await fake_api.wait_for_call("sendMessage", chat_id=51)
    loop = asyncio.get_running_loop()
    started = loop.time()
    code = await bot.stop(signal.SIGTERM, timeout=10)
    assert code == 0, bot.output[-2000:]
    assert loop.time() - started < 8
    assert "Stopped cleanly" in bot.output
    # The buffered start event was flushed on the way out.
    await wait_for_rows(
        database_url, "SELECT 1 FROM shared.analytics_events WHERE telegram_id = 51"
    )
