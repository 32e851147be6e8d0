"""The fake Bot API's updates (long polls, offsets, odd updates, the raw protocol) and its
recipients (blocked, deleted and unknown chats; flood control; the record of sends)."""

import asyncio
import time

import aiohttp
import pytest
from aiogram import Bot, Dispatcher, F, Router
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramForbiddenError,
    TelegramRetryAfter,
)
from aiogram.filters import CommandStart
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    Message,
)

from ecosystem_shared.testing.fake_bot_api import ANONYMOUS_ADMIN_ID, FakeBotAPI
from ecosystem_shared.testing.fake_recipients import FloodControl, Send, SendLog


async def test_long_poll_returns_early_when_an_update_arrives(api: FakeBotAPI, bot: Bot) -> None:
    started = time.monotonic()
    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await api.wait_for_polling(timeout=5)
    pushed = api.push_message("hello", user_id=77, username="ann", first_name="Ann")
    updates = await asyncio.wait_for(poll, 5)
    assert time.monotonic() - started < 5
    assert [update.update_id for update in updates] == [pushed["update_id"]]
    message = updates[0].message
    assert message is not None and message.text == "hello" and message.chat.id == 77
    assert message.from_user is not None and message.from_user.username == "ann"
    assert api.updates_served == 1


@pytest.mark.slow  # real time: a whole second, the shortest non-zero long poll
async def test_long_poll_times_out_empty(bot: Bot) -> None:
    started = time.monotonic()
    assert await bot.get_updates(timeout=1) == []
    assert time.monotonic() - started >= 0.9


async def test_offset_confirms_updates(api: FakeBotAPI, bot: Bot) -> None:
    first, second = api.push_message("one"), api.push_message("two")
    assert second["update_id"] == first["update_id"] + 1
    assert len(await bot.get_updates()) == 2
    assert len(await bot.get_updates()) == 2  # not confirmed yet: served again
    remaining = await bot.get_updates(offset=first["update_id"] + 1)
    assert [update.update_id for update in remaining] == [second["update_id"]]
    assert await bot.get_updates(offset=second["update_id"] + 1) == []
    assert await bot.get_updates() == []  # confirmed for good
    third = api.push_message("three")
    assert [u.update_id for u in await bot.get_updates(limit=1)] == [third["update_id"]]


async def test_second_poller_terminates_the_first(api: FakeBotAPI, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=10))
    await api.wait_for_polling()
    second = asyncio.create_task(bot.get_updates(timeout=0))
    with pytest.raises(TelegramConflictError):
        await asyncio.wait_for(first, 5)
    assert await second == []


async def test_odd_updates_parse_in_aiogram(api: FakeBotAPI, bot: Bot) -> None:
    api.push_channel_post("post", chat_id=-1001)
    api.push_anonymous_admin_message("anon", chat_id=-1002)
    api.push_edited_message("edited", user_id=3)
    api.push_callback_query("data", user_id=4)
    api.push_my_chat_member(user_id=5, new_status="kicked")
    api.push_raw({"update_id": 999, "some_future_update": {"x": 1}})
    updates = await bot.get_updates()
    assert len(updates) == 6
    post, anon, edited, callback, member, raw = updates
    assert post.channel_post is not None and post.channel_post.from_user is None
    assert post.channel_post.sender_chat is not None
    assert post.channel_post.sender_chat.type == "channel"
    assert anon.message is not None and anon.message.from_user is not None
    assert anon.message.from_user.id == ANONYMOUS_ADMIN_ID
    assert anon.message.sender_chat is not None and anon.message.sender_chat.id == -1002
    assert edited.edited_message is not None and edited.edited_message.edit_date
    assert callback.callback_query is not None and callback.callback_query.data == "data"
    assert member.my_chat_member is not None
    assert member.my_chat_member.new_chat_member.status == "kicked"
    assert raw.update_id == 999 and api.push_message("next")["update_id"] == 1000


async def test_callback_answers_and_commands(api: FakeBotAPI, bot: Bot) -> None:
    with pytest.raises(TelegramBadRequest, match="query ID is invalid"):
        await bot.answer_callback_query("nope")
    query = api.push_callback_query("x", user_id=9)["callback_query"]
    assert await bot.answer_callback_query(query["id"], text="ok") is True
    with pytest.raises(TelegramBadRequest, match="BOT_COMMAND_INVALID"):
        await bot.set_my_commands([BotCommand(command="Start", description="Begin")])
    await bot.set_my_commands([BotCommand(command="start", description="Begin")])
    assert list(api.commands.values()) == [[{"command": "start", "description": "Begin"}]]
    assert await bot.delete_webhook() is True and await bot.log_out() is True
    assert await bot.send_chat_action(9, "typing") is True  # other methods: true, recorded
    assert api.calls("sendChatAction", chat_id=9, action="typing")


async def test_raw_http_protocol(api: FakeBotAPI) -> None:
    url = f"{api.base_url}/bot{api.token}"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/SENDMESSAGE", json={"chat_id": 3, "text": "x"}) as response:
            body = await response.json()
            assert body["ok"] is True and body["result"]["text"] == "x"
        async with http.get(f"{url}/getMe") as response:
            assert (await response.json())["result"]["is_bot"] is True
        async with http.get(f"{url}/sendMessage?chat_id=3") as response:
            body = await response.json()
            assert response.status == 400
            assert body == {
                "ok": False,
                "error_code": 400,
                "description": "Bad Request: message text is empty",
            }
        form = aiohttp.FormData()
        form.add_field("chat_id", "3")
        form.add_field("photo", b"raw", filename="p.png")
        async with http.post(f"{url}/sendPhoto", data=form) as response:
            assert (await response.json())["ok"] is True
        api.fail_next("getMe", retry_after=7)
        async with http.get(f"{url}/getMe") as response:
            body = await response.json()
            assert response.status == 429 and body["parameters"] == {"retry_after": 7}
        async with http.get(f"{api.base_url}/file/bot{api.token}/nothing/here") as response:
            assert response.status == 404
    assert [call.method for call in api.calls()][:2] == ["sendMessage", "getMe"]
    assert api.calls("sendPhoto")[0].file("photo").data == b"raw"


async def test_wait_for_call_fails_with_what_was_seen(api: FakeBotAPI, bot: Bot) -> None:
    await bot.send_message(1, "to someone else")
    with pytest.raises(AssertionError, match="to someone else"):
        await api.wait_for_call("sendMessage", timeout=0.3, chat_id=2)
    waiter = asyncio.create_task(api.wait_for_calls("sendMessage", 3, chat_id=1))
    await bot.send_message(1, "two")
    await bot.send_message(1, "three")
    assert [call.params["text"] for call in await waiter][-1] == "three"
    api.clear_calls()
    assert api.calls() == []


async def test_dispatcher_polling_answers_start(api: FakeBotAPI, bot: Bot) -> None:
    router = Router()

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        assert message.from_user is not None
        await message.answer(f"Hello, {message.from_user.first_name}!")

    @router.message(F.text)
    async def echo(message: Message) -> None:
        await message.answer(message.text or "")

    dp = Dispatcher()
    dp.include_router(router)
    polling = asyncio.create_task(
        dp.start_polling(
            bot,
            handle_signals=False,
            close_bot_session=False,
            polling_timeout=1,
            allowed_updates=dp.resolve_used_update_types(),
        )
    )
    try:
        await api.wait_for_polling()
        api.push_callback_query("not subscribed", user_id=11)  # dropped: not in allowed_updates
        api.push_message("/start", user_id=11, first_name="Ann")
        reply = await api.wait_for_call("sendMessage", chat_id=11)
        assert reply.params["text"] == "Hello, Ann!"
        api.push_message("again", user_id=11)
        await api.wait_for_call("sendMessage", chat_id=11, text="again")
    finally:
        await dp.stop_polling()
        await asyncio.wait_for(polling, 10)
    assert api.allowed_updates == {"message"}
    assert api.updates_served == 2


# -- recipients: blocked, deleted and unknown chats; flood control; the record of sends --------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_blocked_deactivated_and_unknown_chats(api: FakeBotAPI, bot: Bot) -> None:
    api.block(7)
    api.deactivate(8)
    api.forget_chats(9)
    with pytest.raises(TelegramForbiddenError, match="Forbidden: bot was blocked by the user"):
        await bot.send_message(7, "hi")
    with pytest.raises(TelegramForbiddenError, match="Forbidden: user is deactivated"):
        await bot.send_photo(8, BufferedInputFile(b"img", "a.jpg"))
    with pytest.raises(TelegramBadRequest, match="Bad Request: chat not found"):
        await bot.send_message(9, "hi")
    with pytest.raises(TelegramForbiddenError):  # any method aimed at the chat
        await bot.send_chat_action(7, "typing")
    await bot.send_message(10, "hi")
    api.unblock(7)
    await bot.send_message(7, "back")
    assert [(s.method, s.chat_id, s.error_code) for s in api.sends] == [
        ("sendMessage", 7, 403),
        ("sendPhoto", 8, 403),
        ("sendMessage", 9, 400),
        ("sendMessage", 10, None),
        ("sendMessage", 7, None),
    ]  # sendChatAction puts no message in the chat: not a send
    assert api.sends[1].description == "Forbidden: user is deactivated"
    assert api.send_log.deliveries() == {10: 1, 7: 1}


async def test_my_chat_member_updates_block_and_unblock(api: FakeBotAPI, bot: Bot) -> None:
    api.push_my_chat_member(21, "kicked")
    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(21, "hi")
    api.push_my_chat_member(21, "member")
    await bot.send_message(21, "hi")
    api.drop_pending()
    api.block(22, 23, notify=True)
    api.unblock(23, notify=True)
    changes = [
        (u["my_chat_member"]["chat"]["id"], u["my_chat_member"]["new_chat_member"]["status"])
        for u in api.deliverable_updates()
    ]
    assert changes == [(22, "kicked"), (23, "kicked"), (23, "member")]
    assert api.recipients.blocked == {22}


async def test_flood_control_every_nth_send_with_a_hold(api: FakeBotAPI, bot: Bot) -> None:
    clock = FakeClock()
    flood = api.set_flood_control(every=3, retry_after=2, clock=clock)
    assert flood is not None
    await bot.send_message(1, "a")
    await bot.send_message(2, "b")
    with pytest.raises(TelegramRetryAfter) as first:
        await bot.send_message(3, "c")
    assert first.value.retry_after == 2
    clock.now += 1.5  # repeated too early: refused, with the time left
    with pytest.raises(TelegramRetryAfter) as again:
        await bot.send_message(3, "c")
    assert again.value.retry_after == 1
    await bot.get_me()  # not a send: never limited
    clock.now += 0.5
    await bot.send_message(3, "c")
    assert flood.triggers == [(1000.0, 2)] and flood.refused == 2
    assert flood.in_hold(1001.0) and not flood.in_hold(1002.0)
    assert not flood.in_hold(1000.05, grace=0.1)  # in flight when the 429 was answered
    assert [s.error_code for s in api.sends] == [None, None, 429, 429, None]
    api.set_flood_control()
    for chat in range(5):
        await bot.send_message(chat, "free")


async def test_flood_control_without_a_hold_refuses_only_the_nth(api: FakeBotAPI, bot: Bot) -> None:
    api.set_flood_control(every=2, hold=False)
    outcomes = []
    for chat in range(6):
        try:
            await bot.send_message(chat, "x")
            outcomes.append("ok")
        except TelegramRetryAfter:
            outcomes.append("429")
    assert outcomes == ["ok", "429"] * 3


def refusals(control: FloodControl, count: int) -> list[bool]:
    return [control.refusal("sendMessage", n) is not None for n in range(count)]


def test_random_429s_repeat_with_the_seed() -> None:
    runs = [
        refusals(FloodControl(probability=0.1, seed=seed, hold=False), 2000) for seed in (7, 7, 8)
    ]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert 140 <= sum(runs[0]) <= 260  # about 10 %
    assert FloodControl(probability=0.1, seed=7, hold=False).refusal("getMe", 1) is None


def test_rate_limits_per_bot_and_per_chat() -> None:
    clock = FakeClock()
    control = FloodControl(per_second=30, hold=False, clock=clock)
    assert refusals(control, 31) == [False] * 30 + [True]
    clock.now += 1.0  # the window moved on
    assert refusals(control, 1) == [False]
    per_chat = FloodControl(per_chat_per_second=1, hold=False, clock=clock)
    assert per_chat.refusal("sendMessage", 5) is None
    assert per_chat.refusal("sendMessage", "5") == (429, "Too Many Requests: retry after 1", 1)
    assert per_chat.refusal("sendMessage", 6) is None
    clock.now += 1.0
    assert per_chat.refusal("sendMessage", 5) is None


async def test_the_send_log_finds_duplicates_and_pace(api: FakeBotAPI, bot: Bot) -> None:
    for chat in (1, 2, 2, 3):
        await bot.send_message(chat, "news")
    assert api.send_log.duplicates() == {2: 2}
    assert api.send_log.duplicates("sendPhoto") == {}
    assert len(api.send_log.select(chat_id="2")) == 2
    log = SendLog()
    for moment in (0.0, 0.1, 0.2, 0.95, 1.5, 1.6, 3.0):
        log.add(Send("sendMessage", int(moment * 10), moment))
    log.add(Send("sendMessage", 99, 0.5, 403, "Forbidden: bot was blocked by the user"))
    assert log.max_in_window(1.0) == 4  # 0.0 .. 0.95
    assert log.max_in_window(1.0, delivered=None) == 5
    assert log.max_in_window(0.5) == 3
    assert log.rate() == pytest.approx(6 / 3.0)
    assert [s.chat_id for s in log.select(delivered=False)] == [99]
