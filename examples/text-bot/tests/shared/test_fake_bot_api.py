"""The fake Bot API driven by a real aiogram Bot over HTTP: methods, Telegram's checks on what
is sent (HTML, lengths, photo sizes, uploads) and injected faults."""

import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
)

from ecosystem_shared.testing.fake_bot_api import FakeBotAPI
from ecosystem_shared.testing.telegram_fixtures import bot_for


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
