"""The dispatcher as run_bot builds it: errors through aiogram's errors mechanism, fresh routers.

A bot's own ``@router.errors()`` handler runs before the shared error reporter and, when it
handles the error, is the only one that does; what no errors handler takes is logged with its
traceback (secrets redacted), recorded as an ``error`` event and answered with the friendly text,
and the bot keeps serving. ``build_router()`` can be called once per dispatcher, any number of
times in one process. In-process with a real database; updates are built by the fake Bot API.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiogram import F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.filters import Command, ExceptionTypeFilter
from aiogram.types import CallbackQuery, ErrorEvent, Message

from ecosystem_shared.log import REDACTED, RedactingFormatter
from ecosystem_shared.testing.fake_bot_api import FakeBotAPI
from ecosystem_shared.testing.in_process import InProcessBot, StartInProcess
from ecosystem_shared.texts import shared_texts

FRIENDLY = shared_texts("en").error
OWN_REPLY = "handled by the bot's own errors handler"


class Failing:
    """A router of a bot that fails on purpose and has errors handlers of its own."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.seen: list[Exception] = []  # errors the catch-all handler saw (and passed on)

    def router(self) -> Router:
        routes = Router(name="failing")
        routes.message.register(self.fail_value, Command("value"))
        routes.message.register(self.fail_runtime, Command("runtime"))
        routes.callback_query.register(self.fail_runtime, F.data == "press")
        routes.errors.register(self.own_handler, ExceptionTypeFilter(ValueError))
        routes.errors.register(self.look_and_pass)
        return routes

    async def fail_value(self, message: Message) -> None:
        raise ValueError("a value the bot knows how to handle")

    async def fail_runtime(self, event: Message | CallbackQuery) -> None:
        raise RuntimeError(f"failed while calling /bot{self.secret}/getMe")

    async def own_handler(self, event: ErrorEvent) -> None:
        assert event.update.message is not None
        await event.update.message.answer(OWN_REPLY)

    async def look_and_pass(self, event: ErrorEvent) -> None:
        self.seen.append(event.exception)
        raise SkipHandler  # not handled here: the next errors handler, or the shared reporter


def message(api: FakeBotAPI, text: str, user_id: int) -> dict[str, Any]:
    """A private message as Telegram sends it (the fake also queues it; nobody polls here)."""
    return api.push_message(text, user_id=user_id)


async def error_events(h: InProcessBot, telegram_id: int) -> list[Any]:
    await h.analytics.flush()
    async with h.services.db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT event_data FROM shared.analytics_events"
            " WHERE event_type = 'error' AND telegram_id = $1",
            telegram_id,
        )
    return [row["event_data"] for row in rows]


def texts_to(api: FakeBotAPI, chat_id: int) -> list[str]:
    return [call.params["text"] for call in api.calls("sendMessage", chat_id=chat_id)]


async def test_own_errors_handler_runs_first_and_the_shared_one_stays_quiet(
    in_process_bot: StartInProcess, fake_api: FakeBotAPI, caplog: pytest.LogCaptureFixture
) -> None:
    failing = Failing(fake_api.token)
    h = await in_process_bot(routers=[failing.router()])
    await h.feed(message(fake_api, "/value", 701))
    assert texts_to(fake_api, 701) == [OWN_REPLY]  # no friendly text on top
    assert [type(error) for error in h.errors] == [ValueError]
    assert await error_events(h, 701) == []
    assert "Unhandled error" not in caplog.text


async def test_unhandled_error_is_logged_recorded_and_answered_and_the_bot_serves_on(
    in_process_bot: StartInProcess, fake_api: FakeBotAPI, caplog: pytest.LogCaptureFixture
) -> None:
    failing = Failing(fake_api.token)
    h = await in_process_bot(routers=[failing.router()])
    caplog.set_level(logging.ERROR, logger="ecosystem_shared.middlewares.errors")
    await h.feed(message(fake_api, "/runtime", 702))

    assert [type(error) for error in failing.seen] == [RuntimeError]  # the bot's handler saw it
    assert texts_to(fake_api, 702) == [FRIENDLY]
    [record] = [r for r in caplog.records if r.getMessage().startswith("Unhandled error")]
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
    logged = RedactingFormatter("%(message)s", [fake_api.token]).format(record)
    assert "Traceback" in logged and "fail_runtime" in logged  # with the traceback,
    assert fake_api.token not in logged and REDACTED in logged  # the token hidden
    [event] = await error_events(h, 702)
    assert event["error"].startswith("RuntimeError: failed while calling /bot")
    assert fake_api.token not in event["error"] and REDACTED in event["error"]

    await h.feed(message(fake_api, "/help", 702))  # the bot's own /help still answers
    assert len(texts_to(fake_api, 702)) == 2 and texts_to(fake_api, 702)[-1] != FRIENDLY


async def test_failed_button_press_gets_an_alert(
    in_process_bot: StartInProcess, fake_api: FakeBotAPI
) -> None:
    h = await in_process_bot(routers=[Failing(fake_api.token).router()])
    await h.feed(fake_api.push_callback_query("press", user_id=703))
    [answer] = fake_api.calls("answerCallbackQuery")
    assert answer.params["text"] == FRIENDLY and answer.params["show_alert"] in (True, "true")
    assert len(await error_events(h, 703)) == 1


async def test_an_errors_handler_that_fails_does_not_hide_the_error(
    in_process_bot: StartInProcess, fake_api: FakeBotAPI, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(event: ErrorEvent) -> None:
        raise LookupError("the errors handler itself is broken")

    routes = Router(name="broken")
    routes.message.register(Failing(fake_api.token).fail_value, Command("value"))
    routes.errors.register(broken)
    h = await in_process_bot(routers=[routes])
    await h.feed(message(fake_api, "/value", 704))
    assert texts_to(fake_api, 704) == [FRIENDLY]
    assert "An errors handler failed" in caplog.text and "LookupError" in caplog.text
    [event] = await error_events(h, 704)
    assert event["error"].startswith("ValueError")


async def test_two_dispatchers_in_one_process_each_with_fresh_routers(
    in_process_bot: StartInProcess, fake_api: FakeBotAPI
) -> None:
    first = await in_process_bot()
    second = await in_process_bot(LANGUAGE="ru")
    assert first.dp is not second.dp
    ours = {id(router) for router in first.dp.chain_tail}
    assert ours.isdisjoint(id(router) for router in second.dp.chain_tail)
    await first.feed(message(fake_api, "/help", 705))
    await second.feed(message(fake_api, "/help", 706))
    [english] = texts_to(fake_api, 705)
    [russian] = texts_to(fake_api, 706)
    assert english != russian  # each dispatcher answered with its own settings
    assert not first.errors and not second.errors
