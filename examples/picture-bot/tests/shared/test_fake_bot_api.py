"""The test kit the bot tests rely on: the fake Bot API (driven by a real aiogram Bot over HTTP)
and the bot process runner."""

import asyncio
import hashlib
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiogram import Bot, Dispatcher, F, Router
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramConflictError,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.filters import CommandStart
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    Message,
)

from ecosystem_shared.testing.bot_process import BotProcess
from ecosystem_shared.testing.fake_bot_api import ANONYMOUS_ADMIN_ID, FakeBotAPI
from ecosystem_shared.testing.fake_recipients import FloodControl, Send, SendLog
from ecosystem_shared.testing.telegram_fixtures import bot_for
from ecosystem_shared.testing.waiting import wait_until


@pytest_asyncio.fixture
async def api() -> AsyncIterator[FakeBotAPI]:
    async with FakeBotAPI() as server:
        yield server


@pytest_asyncio.fixture
async def bot(api: FakeBotAPI) -> AsyncIterator[Bot]:
    bot = bot_for(api)
    yield bot
    await bot.session.close()


def photos(count: int) -> list[Any]:  # aiogram's media union differs between versions
    return [
        InputMediaPhoto(media=BufferedInputFile(f"photo {n}".encode(), f"{n}.jpg"))
        for n in range(count)
    ]


async def test_get_me_and_unknown_token(api: FakeBotAPI, bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.username) == (123456, True, "test_bot")
    assert [call.method for call in api.calls()] == ["getMe"]
    stranger = bot_for(api, token="999:someone-else")
    with pytest.raises(TelegramUnauthorizedError):
        await stranger.get_me()
    await stranger.session.close()
    assert len(api.calls()) == 1


async def test_send_message_is_parsed_and_recorded(api: FakeBotAPI, bot: Bot) -> None:
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="Go", callback_data="go:1")]]
    )
    sent = await bot.send_message(42, "<b>hi</b> there", parse_mode="HTML", reply_markup=keyboard)
    assert (sent.chat.id, sent.chat.type, sent.text) == (42, "private", "hi there")
    assert sent.from_user is not None and sent.from_user.id == bot.id
    assert sent.reply_markup is not None
    assert sent.reply_markup.inline_keyboard[0][0].callback_data == "go:1"
    call = await api.wait_for_call("sendMessage", chat_id="42")
    assert call.params["chat_id"] == 42 and call.params["parse_mode"] == "HTML"
    assert call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "go:1"
    assert call.result["message_id"] == sent.message_id and call.error_code is None
    assert api.calls("sendMessage", chat_id=43) == []
    assert api.calls("SENDMESSAGE", text=lambda text: "hi" in text) == [call]


@pytest.mark.parametrize(
    ("text", "parse_mode", "error"),
    [
        ("", None, "message text is empty"),
        ("   ", None, "message text is empty"),
        ("x" * 4097, None, "message is too long"),
        ("<br>line", "HTML", 'Unsupported start tag "br"'),
        ("<b>unclosed", "HTML", "Can't find end tag"),
        ("<b><i>bad</b></i>", "HTML", "Unmatched end tag"),
    ],
)
async def test_bad_messages_get_telegram_errors(
    api: FakeBotAPI, bot: Bot, text: str, parse_mode: str | None, error: str
) -> None:
    with pytest.raises(TelegramBadRequest, match=error):
        await bot.send_message(1, text, parse_mode=parse_mode)
    assert api.calls("sendMessage")[0].error_code == 400


async def test_length_limit_counts_visible_text(bot: Bot) -> None:
    await bot.send_message(1, "x" * 4096)
    await bot.send_message(1, "<b>" + "x" * 4096 + "</b>", parse_mode="HTML")
    await bot.send_message(1, "a < b &amp; <i>c</i>", parse_mode="HTML")


async def test_rate_limit_and_server_errors(api: FakeBotAPI, bot: Bot) -> None:
    api.fail_next("sendMessage", retry_after=3)
    with pytest.raises(TelegramRetryAfter) as retry:
        await bot.send_message(1, "a")
    assert retry.value.retry_after == 3
    await bot.send_message(1, "a")  # one failure only

    api.fail_next("sendMessage", error_code=500, times=2)
    for _ in range(2):
        with pytest.raises(TelegramServerError):
            await bot.send_message(1, "b")
    await bot.send_message(1, "b")
    assert [call.error_code for call in api.calls("sendMessage")] == [429, None, 500, 500, None]

    api.fail_next("*", error_code=400, description="Bad Request: chat not found")
    with pytest.raises(TelegramBadRequest, match="chat not found"):
        await bot.get_me()


@pytest.mark.slow  # real time: a whole second, the shortest request timeout aiogram takes
async def test_delay_makes_a_request_time_out(api: FakeBotAPI, bot: Bot) -> None:
    api.delay_next("getMe", 3)
    started = time.monotonic()
    with pytest.raises(TelegramNetworkError):
        await bot.get_me(request_timeout=1)
    assert time.monotonic() - started < 2.5
    await bot.get_me()


async def test_outage_drops_connections_or_answers_502(api: FakeBotAPI, bot: Bot) -> None:
    api.set_unreachable()
    with pytest.raises(TelegramNetworkError):
        await bot.get_me()
    api.set_unreachable(status=502)
    with pytest.raises(TelegramServerError):
        await bot.get_me()
    api.set_unreachable(False)
    assert (await bot.get_me()).id == 123456


async def test_photo_upload_is_recorded_with_its_bytes(api: FakeBotAPI, bot: Bot) -> None:
    data = b"\xff\xd8\xff" + bytes(range(256)) * 40
    sent = await bot.send_photo(5, BufferedInputFile(data, "cat.jpg"), caption="A cat")
    assert sent.caption == "A cat" and sent.photo is not None
    assert sent.photo[-1].file_size == len(data) and sent.photo[-1].width == 800
    upload = api.calls("sendPhoto", chat_id=5)[0].file("photo")
    assert (upload.filename, upload.data, upload.size) == ("cat.jpg", data, len(data))
    assert upload.sha256 == hashlib.sha256(data).hexdigest()
    # The uploaded file can be downloaded back, as from Telegram.
    file = await bot.get_file(sent.photo[-1].file_id)
    assert file.file_path is not None
    downloaded = await bot.download_file(file.file_path)
    assert downloaded is not None and downloaded.read() == data


def png_header(width: int, height: int) -> bytes:
    """The start of a PNG: signature and IHDR chunk (all a size check reads)."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 6, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + len(ihdr).to_bytes(4, "big") + b"IHDR" + ihdr + b"\0" * 4


@pytest.mark.parametrize(
    ("width", "height", "accepted"),
    [(1200, 1500, True), (5000, 5000, True), (6000, 4001, False), (2100, 100, False)],
)
async def test_photo_dimensions_follow_telegram(
    bot: Bot, width: int, height: int, accepted: bool
) -> None:
    """width + height <= 10000 and a ratio of at most 20, as sendPhoto documents."""
    photo = BufferedInputFile(png_header(width, height), "chart.png")
    if accepted:
        assert (await bot.send_photo(5, photo)).photo
    else:
        with pytest.raises(TelegramBadRequest, match="PHOTO_INVALID_DIMENSIONS"):
            await bot.send_photo(5, photo)


async def test_video_and_document(api: FakeBotAPI, bot: Bot) -> None:
    video = await bot.send_video(6, BufferedInputFile(b"\x00\x00\x00\x18ftypmp42", "v.mp4"))
    assert video.video is not None and video.video.file_size == 12
    document = await bot.send_document(6, BufferedInputFile(b"%PDF", "a.pdf"), caption="doc")
    assert document.document is not None and document.document.file_name == "a.pdf"
    assert api.calls("sendDocument")[0].file("document").data == b"%PDF"
    with pytest.raises(TelegramBadRequest, match="caption is too long"):
        await bot.send_document(6, BufferedInputFile(b"x", "x"), caption="c" * 1025)


async def test_media_group_takes_two_to_ten_items(api: FakeBotAPI, bot: Bot) -> None:
    for count in (1, 11):
        with pytest.raises(TelegramBadRequest):
            await bot.send_media_group(7, photos(count))
    album = await bot.send_media_group(7, photos(10))
    assert len(album) == 10 and len({message.media_group_id for message in album}) == 1
    call = api.calls("sendMediaGroup", chat_id=7)[-1]
    items = call.params["media"]
    assert [call.file(item).data for item in items] == [f"photo {n}".encode() for n in range(10)]
    assert [c.error_code for c in api.calls("sendMediaGroup")] == [400, 400, None]


async def test_local_server_takes_file_paths(api: FakeBotAPI, tmp_path: Path) -> None:
    video = tmp_path / "big video.mp4"
    video.write_bytes(b"v" * 5000)
    local = bot_for(api, is_local=True)
    try:
        sent = await local.send_video(8, video.as_uri())
        assert sent.video is not None and sent.video.file_size == 5000
        await local.send_media_group(
            8, [InputMediaPhoto(media=str(video)), InputMediaPhoto(media=video.as_uri())]
        )
    finally:
        await local.session.close()
    call = await api.wait_for_call("sendVideo", chat_id=8)
    assert call.params["video"] == video.as_uri()
    upload = call.file("video")
    assert (upload.path, upload.size) == (str(video), 5000)
    album = api.calls("sendMediaGroup")[0]
    assert [album.file(item).path for item in album.params["media"]] == [str(video)] * 2


async def test_cloud_server_refuses_file_paths(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"v")
    async with FakeBotAPI(local=False) as cloud:
        bot = bot_for(cloud)
        try:
            with pytest.raises(TelegramBadRequest, match="wrong remote file identifier"):
                await bot.send_video(1, (tmp_path / "a.mp4").as_uri())
        finally:
            await bot.session.close()


async def test_upload_limit(tmp_path: Path) -> None:
    async with FakeBotAPI(local=False, upload_limit_mb=0.01) as cloud:
        bot = bot_for(cloud)
        try:
            with pytest.raises(TelegramEntityTooLarge):
                await bot.send_document(1, BufferedInputFile(b"x" * 20_000, "big.bin"))
            await bot.send_document(1, BufferedInputFile(b"x" * 5_000, "small.bin"))
        finally:
            await bot.session.close()


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


ECHO_BOT = """
import asyncio, os, sys
print("leaked:", os.environ.get("BOT_LEAK"), os.environ.get("DATABASE_URL"), flush=True)
print("cwd:", os.getcwd(), flush=True)
if os.environ.get("CRASH"):
    sys.exit("configuration is broken")
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

async def main():
    server = TelegramAPIServer.from_base(os.environ["TELEGRAM_API_BASE_URL"])
    bot = Bot(os.environ["BOT_TOKEN"], session=AiohttpSession(api=server))
    dp = Dispatcher()

    @dp.message()
    async def echo(message):
        await message.answer(message.text + os.environ.get("SUFFIX", ""))

    await dp.start_polling(bot, polling_timeout=1)

asyncio.run(main())
"""
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
time.sleep(60)
"""


def write_module(root: Path, name: str, source: str) -> Path:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    (root / name / "__main__.py").write_text(source)
    return root


@pytest.mark.slow
async def test_bot_process_runs_the_module_in_a_clean_environment(
    api: FakeBotAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOT_LEAK", "from the shell")
    monkeypatch.setenv("DATABASE_URL", "postgresql://leak@nowhere/db")
    root = write_module(tmp_path, "echo_bot", ECHO_BOT)
    async with BotProcess("echo_bot", root, api, {"SUFFIX": "!"}) as bot:
        assert bot.pid is not None and bot.returncode is None
        api.push_message("ping", user_id=5)
        reply = await api.wait_for_call("sendMessage", chat_id=5)
        assert reply.params["text"] == "ping!"
        assert await bot.stop() == 0
    assert "leaked: None None" in bot.output
    assert f"cwd: {bot.workdir}" in bot.output  # not the repository: its .env is not read


async def test_bot_process_that_dies_fails_with_its_output(api: FakeBotAPI, tmp_path: Path) -> None:
    root = write_module(tmp_path, "crashing_bot", ECHO_BOT)
    bot = BotProcess("crashing_bot", root, api, {"CRASH": "1"})
    with pytest.raises(AssertionError, match="configuration is broken"):
        await bot.start()
    assert bot.returncode == 1
    assert await bot.stop() == 1


@pytest.mark.slow  # a process that has to be given a second to stop
async def test_bot_process_that_ignores_sigterm_is_killed(api: FakeBotAPI, tmp_path: Path) -> None:
    root = write_module(tmp_path, "stubborn_bot", STUBBORN)
    bot = await BotProcess("stubborn_bot", root, api).start(wait_polling=False)
    await wait_until(lambda: asyncio.sleep(0.05, bot.output), lambda out: "ignoring" in out)
    with pytest.raises(AssertionError, match="did not exit within 1 s after SIGTERM"):
        await bot.stop(timeout=1)
    assert bot.returncode == -signal.SIGKILL


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
