"""The bot as a process when the Bot API misbehaves: 429, 5xx, exhausted retries, an outage.

No database here (``DATABASE_URL=""``): these tests are about the Telegram side only. One
process serves every scenario (starting one costs seconds); faults injected with ``fail_next``
hit the next matching call of any chat, so each scenario waits for the previous one to finish.
"""

import asyncio
import itertools

import pytest
from aiogram.exceptions import TelegramServerError
from pydantic import SecretStr

from ecosystem_shared.config import SharedSettings
from ecosystem_shared.telegram import RetryMiddleware, TelegramSession, build_bot
from ecosystem_shared.testing.fake_bot_api import Call, FakeBotAPI
from ecosystem_shared.testing.telegram_fixtures import StartBot

TIMEOUT = 30.0  # generous: the machine may be busy; nothing waits this long when all is well
BUDGET = RetryMiddleware().max_attempts  # attempts per request in the bot's session


def replies(fake_api: FakeBotAPI, chat_id: int) -> list[Call]:
    return fake_api.calls("sendMessage", chat_id=chat_id)


@pytest.mark.slow
async def test_bot_api_errors_and_outage_are_survived(
    fake_api: FakeBotAPI, bot_process_factory: StartBot
) -> None:
    bot = await bot_process_factory(DATABASE_URL="", RATE_LIMIT_SECONDS="0")

    # 429 with retry_after=1: delivered once, after waiting as told.
    fake_api.fail_next("sendMessage", error_code=429, retry_after=1)
    fake_api.push_message("/help", user_id=101)
    limited, delivered = await fake_api.wait_for_calls("sendMessage", 2, TIMEOUT, chat_id=101)
    assert (limited.error_code, delivered.error_code) == (429, None)
    assert delivered.params["text"] == limited.params["text"]
    assert delivered.time - limited.time >= 0.95, "the retry did not wait for retry_after"
    help_text = delivered.params["text"]

    # Two 500s, then success: delivered by the backoff retries.
    fake_api.fail_next("sendMessage", error_code=500, times=2)
    fake_api.push_message("/help", user_id=102)
    calls = await fake_api.wait_for_calls("sendMessage", 3, TIMEOUT, chat_id=102)
    assert [call.error_code for call in calls] == [500, 500, None]
    assert {call.params["text"] for call in calls} == {help_text}

    # More 500s than the retry budget: the handler fails, the error path answers the user.
    fake_api.fail_next("sendMessage", error_code=500, times=BUDGET)
    fake_api.push_message("/help", user_id=103)
    calls = await fake_api.wait_for_calls("sendMessage", BUDGET + 1, TIMEOUT, chat_id=103)
    failed, apology = calls[:BUDGET], calls[BUDGET]
    assert [call.error_code for call in failed] == [500] * BUDGET
    assert {call.params["text"] for call in failed} == {help_text}
    assert apology.error_code is None
    assert apology.params["text"] and apology.params["text"] != help_text
    await bot.wait_for_output(r"(?s)Unhandled error in update.*TelegramServerError")

    # The bot keeps serving.
    fake_api.push_message("/help", user_id=104)
    answer = await fake_api.wait_for_call("sendMessage", TIMEOUT, chat_id=104)
    assert (answer.error_code, answer.params["text"]) == (None, help_text)

    # The Bot API goes away for a few seconds: polling fails, backs off, and comes back.
    fake_api.set_unreachable(True)
    await bot.wait_for_output(r"Failed to fetch updates")
    fake_api.push_message("/help", user_id=105)  # waits in Telegram's queue meanwhile
    await asyncio.sleep(3)  # the outage itself, not a wait for a result
    assert not replies(fake_api, 105)
    fake_api.set_unreachable(False)
    fake_api.push_message("/help", user_id=106)
    for chat_id in (105, 106):
        answer = await fake_api.wait_for_call("sendMessage", TIMEOUT, chat_id=chat_id)
        assert answer.error_code is None
    await bot.wait_for_output(r"Connection established")
    assert bot.returncode is None

    # Nothing was sent twice or late: one successful message per chat, and no extra attempts.
    attempts = {101: 2, 102: 3, 103: BUDGET + 1, 104: 1, 105: 1, 106: 1}
    for chat_id, count in attempts.items():
        calls = replies(fake_api, chat_id)
        assert len(calls) == count, [(c.error_code, c.params["text"]) for c in calls]
        assert sum(call.error_code is None for call in calls) == 1


@pytest.mark.slow
async def test_a_burst_is_handled_at_most_max_concurrent_updates_at_a_time(
    fake_api: FakeBotAPI, bot_process_factory: StartBot
) -> None:
    """MAX_CONCURRENT_UPDATES bounds the handler tasks polling starts (aiogram's default is one
    task per update, however many arrive): with every reply held for 1 s, six updates and a
    limit of 2 are answered in three waves, not at once."""
    await bot_process_factory(DATABASE_URL="", RATE_LIMIT_SECONDS="0", MAX_CONCURRENT_UPDATES=2)
    users = range(201, 207)
    fake_api.delay_next("sendMessage", 1.0, times=len(users))
    for user_id in users:
        fake_api.push_message("/help", user_id=user_id)
    answers = [await fake_api.wait_for_call("sendMessage", TIMEOUT, chat_id=u) for u in users]
    times = sorted(answer.time for answer in answers)
    assert times[-1] - times[0] >= 1.5, f"answered together, not two at a time: {times}"


async def test_callback_answers_are_not_retried(fake_api: FakeBotAPI) -> None:
    """The bot's own Bot object (same session and middleware as in production), in-process:
    the generated bots subscribe to no button presses, so no process would answer one."""
    settings = SharedSettings.model_construct(
        BOT_TOKEN=SecretStr(fake_api.token), TELEGRAM_API_BASE_URL=fake_api.base_url
    )
    bot = build_bot(settings)
    try:
        query_id = fake_api.push_callback_query("press", user_id=301)["callback_query"]["id"]
        fake_api.fail_next("answerCallbackQuery", error_code=500)
        with pytest.raises(TelegramServerError):
            await bot.answer_callback_query(query_id, text="late")
        assert [call.error_code for call in fake_api.calls("answerCallbackQuery")] == [500]
        # The same fault on sendMessage is retried by the same session.
        fake_api.fail_next("sendMessage", error_code=500)
        await bot.send_message(301, "retried")
        assert [c.error_code for c in replies(fake_api, 301)] == [500, None]
    finally:
        await bot.session.close()


async def test_server_errors_are_retried_with_growing_waits(fake_api: FakeBotAPI) -> None:
    """The bot's session backs off on 5xx: base_delay, then twice each wait (with jitter)."""
    settings = SharedSettings.model_construct(
        BOT_TOKEN=SecretStr(fake_api.token), TELEGRAM_API_BASE_URL=fake_api.base_url
    )
    bot = build_bot(settings)
    try:
        fake_api.fail_next("sendMessage", error_code=502, times=BUDGET - 1)
        await bot.send_message(302, "after the backoff")
        calls = replies(fake_api, 302)
        assert [c.error_code for c in calls] == [502] * (BUDGET - 1) + [None]
        waits = [later.time - earlier.time for earlier, later in itertools.pairwise(calls)]
        base = RetryMiddleware().base_delay
        # Lower bounds only: a busy machine makes waits longer, never shorter.
        assert waits[0] >= base * 0.95
        assert all(later >= earlier * 1.5 for earlier, later in itertools.pairwise(waits)), waits
    finally:
        await bot.session.close()


@pytest.mark.parametrize(("base", "waits"), [("https://api.example.org", True), ("", False)])
async def test_session_waits_for_ssl_only_over_https(
    fake_api: FakeBotAPI, monkeypatch: pytest.MonkeyPatch, base: str, waits: bool
) -> None:
    """aiogram's close() pauses 250 ms for SSL connections to finish closing; over plain HTTP
    (a Local Bot API server, the fake here) there are none, and the session closes at once."""
    settings = SharedSettings.model_construct(
        BOT_TOKEN=SecretStr(fake_api.token),
        TELEGRAM_API_BASE_URL=base or fake_api.base_url,
        TELEGRAM_API_LOCAL=False,
    )
    bot = build_bot(settings)
    pauses: list[float] = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr("aiogram.client.session.aiohttp.asyncio.sleep", pause)
    assert isinstance(bot.session, TelegramSession)
    session = await bot.session.create_session()  # what the first request would open
    await bot.session.close()
    assert session.closed
    assert pauses == ([0.25] if waits else [])
