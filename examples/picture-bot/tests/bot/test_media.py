"""Media mode: the article parser, the HTTP media source, ffmpeg, and whole conversations."""

import asyncio
import json
import shutil
import stat
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ecosystem_shared.testing.fake_bot_api import Call, FakeBotAPI
from ecosystem_shared.testing.telegram_fixtures import StartBot
from ecosystem_shared.testing.waiting import fetch, wait_for_rows, wait_until

from picture_bot.handlers.media import parse_article
from picture_bot.services.media import (
    ConversionError,
    HttpMediaSource,
    MediaTooLarge,
    chunked,
    convert_hls_to_mp4,
    media_url,
    url_template_error,
    wb_basket,
)
from picture_bot.settings import Settings

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")

PHOTO_URL = "{base}/vol{vol}/part{part}/{nm_id}/images/big/{n}.jpg"


def photo_bytes(nm_id: int, n: int, size: int = 2048) -> bytes:
    head = f"{nm_id}/{n}:".encode()
    return head + b"\xff" * (size - len(head))


def make_hls(directory: Path, seconds: int = 2) -> Path:
    """A tiny real HLS stream (H.264 + AAC in MPEG-TS segments), made by ffmpeg itself."""
    directory.mkdir(parents=True, exist_ok=True)
    playlist = directory / "index.m3u8"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
         "-f", "lavfi", "-i", f"testsrc=duration={seconds}:size=160x120:rate=10",
         "-f", "lavfi", "-i", f"sine=duration={seconds}",
         "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest",
         "-f", "hls", "-hls_time", "1", "-hls_list_size", "0", str(playlist)],
        check=True,
        timeout=60,
    )  # fmt: skip
    return playlist


def codecs(path: Path) -> list[str]:
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0",
         str(path)],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    return sorted(probe.stdout.split())


def is_mp4(path: Path) -> bool:
    return path.read_bytes()[4:8] == b"ftyp"


@dataclass
class MediaServer:
    """A stand-in for the CDN: photos per article, mp4 and HLS videos, injected failures."""

    photos: dict[int, int] = field(default_factory=dict)
    photo_size: int = 2048
    videos: dict[int, bytes] = field(default_factory=dict)
    hls_dir: Path | None = None
    hls_articles: set[int] = field(default_factory=set)
    fail: dict[tuple[int, int], int] = field(default_factory=dict)  # (nm_id, n) -> status
    chunked_photos: bool = False
    requests: list[str] = field(default_factory=list)
    url: str = ""

    @property
    def photo_url(self) -> str:
        return PHOTO_URL.replace("{base}", self.url)

    @property
    def video_url(self) -> str:
        return self.url + "/video/{nm_id}.mp4"

    @property
    def hls_url(self) -> str:
        return self.url + "/hls/{nm_id}/index.m3u8"

    async def photo(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path)
        nm_id, n = int(request.match_info["nm_id"]), int(request.match_info["n"])
        if (nm_id, n) in self.fail:
            return web.Response(status=self.fail[nm_id, n])
        if n > self.photos.get(nm_id, 0):
            return web.Response(status=404)
        body = photo_bytes(nm_id, n, self.photo_size)
        if not self.chunked_photos:
            return web.Response(body=body, content_type="image/jpeg")
        # No Content-Length: the size limit must hold while streaming.
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(body), 4096):
            await response.write(body[start : start + 4096])
        await response.write_eof()
        return response

    async def video(self, request: web.Request) -> web.Response:
        nm_id = int(request.match_info["nm_id"])
        if nm_id not in self.videos:
            return web.Response(status=404)
        return web.Response(body=self.videos[nm_id], content_type="video/mp4")

    async def hls(self, request: web.Request) -> web.StreamResponse:
        nm_id = int(request.match_info["nm_id"])
        if self.hls_dir is None or nm_id not in self.hls_articles:
            return web.Response(status=404)
        path = self.hls_dir / request.match_info["name"]
        return web.FileResponse(path) if path.is_file() else web.Response(status=404)


@pytest.fixture
async def media_server() -> AsyncIterator[MediaServer]:
    server = MediaServer()
    app = web.Application()
    app.router.add_get("/vol{vol}/part{part}/{nm_id}/images/big/{n}.jpg", server.photo)
    app.router.add_get("/video/{nm_id}.mp4", server.video)
    app.router.add_get("/hls/{nm_id}/{name}", server.hls)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}"
    yield server
    await runner.cleanup()


# ---------------------------------------------------------------- article numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12345678", 12345678),
        ("  1  ", 1),
        ("999999999", 999999999),
        ("000042", 42),
        ("https://www.wildberries.ru/catalog/12345678/detail.aspx", 12345678),
        ("look: wildberries.ru/catalog/87654321/detail.aspx?size=1", 87654321),
        ("0", None),
        ("1000000000", None),
        ("99999999999999999999999", None),
        ("-5", None),
        ("12.5", None),
        ("1e6", None),
        ("abc", None),
        ("", None),
        ("١٢٣", None),  # non-ASCII digits
        ("12 34", None),
        ("https://www.wildberries.ru/catalog/0/detail.aspx", None),
    ],
)
def test_parse_article(text: str, expected: int | None) -> None:
    assert parse_article(text) == expected


@given(st.integers(min_value=1, max_value=999_999_999))
def test_every_valid_article_parses(nm_id: int) -> None:
    assert parse_article(str(nm_id)) == nm_id


@given(st.integers().filter(lambda n: not 1 <= n <= 999_999_999))
def test_every_out_of_range_article_is_refused(nm_id: int) -> None:
    assert parse_article(str(nm_id)) is None


# ---------------------------------------------------------------- albums, URLs, settings


def test_chunking_respects_the_album_size() -> None:
    assert [len(chunk) for chunk in chunked(list(range(25)))] == [10, 10, 5]
    assert [len(chunk) for chunk in chunked(list(range(21)))] == [10, 10, 1]
    assert [len(chunk) for chunk in chunked(list(range(10)))] == [10]
    assert list(chunked([])) == []
    assert [x for chunk in chunked(list(range(25))) for x in chunk] == list(range(25))


def test_wildberries_urls() -> None:
    assert wb_basket(14_399_999) == "01"  # vol 143
    assert wb_basket(14_400_000) == "02"  # vol 144
    baskets = [wb_basket(nm_id) for nm_id in range(1, 999_999_999, 997_331)]
    assert baskets == sorted(baskets)
    assert wb_basket(999_999_999) == max(baskets)
    url = media_url(Settings(BOT_TOKEN="1:x").MEDIA_PHOTO_URL, 12345678, 3)
    assert url == "https://basket-01.wbbasket.ru/vol123/part12345/12345678/images/big/3.webp"


def test_url_templates_are_checked() -> None:
    assert url_template_error(PHOTO_URL.replace("{base}", "http://h")) is None
    assert "placeholder" in (url_template_error("http://h/{nm}/{n}.jpg") or "")
    assert "braces" in (url_template_error("http://h/{nm_id/{n}.jpg") or "")
    assert "http" in (url_template_error("ftp://h/{nm_id}") or "")
    with pytest.raises(ValidationError, match="MEDIA_PHOTO_URL"):
        Settings(BOT_TOKEN="1:x", MEDIA_PHOTO_URL="http://h/{id}.jpg")
    assert Settings(BOT_TOKEN="1:x", MEDIA_VIDEO_URL=" ").MEDIA_VIDEO_URL is None


# ---------------------------------------------------------------- the HTTP source


async def test_source_fetches_photos_until_the_first_404(
    media_server: MediaServer, tmp_path: Path
) -> None:
    media_server.photos[12345678] = 7
    media_server.videos[12345678] = b"\x00\x00\x00\x18ftypmp42" + b"v" * 1000
    source = HttpMediaSource(
        media_server.photo_url, media_server.video_url, max_photos=30, work_root=tmp_path
    )
    try:
        bundle = await source.fetch(12345678)
        assert [p.path.read_bytes() for p in bundle.photos] == [
            photo_bytes(12345678, n) for n in range(1, 8)
        ]
        assert [p.size for p in bundle.photos] == [2048] * 7
        assert bundle.video is not None
        assert bundle.video.path.read_bytes() == media_server.videos[12345678]
        assert not bundle.too_large and not bundle.failed
        # Readable by a Local Bot API server running as another user.
        assert bundle.directory is not None and bundle.directory.parent == tmp_path
        assert stat.S_IMODE(bundle.directory.stat().st_mode) == 0o755
        assert "/vol123/part12345/12345678/images/big/1.jpg" in media_server.requests
        directory = bundle.directory
        bundle.cleanup()
        assert not directory.exists()

        empty = await source.fetch(999)
        assert empty.empty and not empty.failed
        empty.cleanup()
    finally:
        await source.close()


async def test_source_stops_at_max_photos(media_server: MediaServer) -> None:
    media_server.photos[5] = 40
    source = HttpMediaSource(media_server.photo_url, max_photos=12)
    try:
        bundle = await source.fetch(5)
        assert len(bundle.photos) == 12
        assert bundle.video is None
        bundle.cleanup()
    finally:
        await source.close()


@pytest.mark.parametrize("streamed", [False, True])
async def test_source_refuses_files_above_the_limit(
    media_server: MediaServer, streamed: bool
) -> None:
    media_server.photos[7] = 2
    media_server.photo_size = 300_000
    media_server.chunked_photos = streamed
    source = HttpMediaSource(media_server.photo_url, max_bytes=100_000)
    try:
        bundle = await source.fetch(7)
        assert bundle.photos == []
        assert bundle.too_large == ["photo 1", "photo 2"]
        assert bundle.directory is not None
        assert list(bundle.directory.iterdir()) == []  # partial downloads removed
        bundle.cleanup()
    finally:
        await source.close()


async def test_source_reports_server_failures(media_server: MediaServer) -> None:
    media_server.photos[8] = 5
    media_server.fail[8, 3] = 503
    source = HttpMediaSource(media_server.photo_url)
    try:
        bundle = await source.fetch(8)
        assert len(bundle.photos) == 2
        assert bundle.failed == ["photo 3: HTTP 503 for photo 3"]
        bundle.cleanup()
    finally:
        await source.close()


@needs_ffmpeg
async def test_source_converts_an_hls_video(media_server: MediaServer, tmp_path: Path) -> None:
    playlist = await asyncio.to_thread(make_hls, tmp_path / "hls")
    media_server.hls_dir = playlist.parent
    media_server.hls_articles.add(21)
    source = HttpMediaSource(media_server.photo_url, media_server.hls_url, timeout=10)
    try:
        bundle = await source.fetch(21)
        assert bundle.photos == [] and not bundle.failed
        assert bundle.video is not None and bundle.video.path.suffix == ".mp4"
        assert is_mp4(bundle.video.path)
        bundle.cleanup()
        missing = await source.fetch(22)  # playlist 404: no video, not an error
        assert missing.empty and not missing.failed
        missing.cleanup()
    finally:
        await source.close()


# ---------------------------------------------------------------- ffmpeg


@needs_ffmpeg
async def test_convert_hls_to_mp4(tmp_path: Path) -> None:
    playlist = await asyncio.to_thread(make_hls, tmp_path / "hls")
    dest = await convert_hls_to_mp4(playlist, tmp_path / "out.mp4", "ffmpeg", 60)
    assert dest == tmp_path / "out.mp4" and is_mp4(dest)
    assert await asyncio.to_thread(codecs, dest) == ["aac", "h264"]  # copied, not re-encoded

    with pytest.raises(MediaTooLarge):
        await convert_hls_to_mp4(playlist, tmp_path / "big.mp4", "ffmpeg", 60, max_bytes=1000)
    assert not (tmp_path / "big.mp4").exists()


@needs_ffmpeg
async def test_convert_reports_ffmpeg_failure(tmp_path: Path) -> None:
    broken = tmp_path / "broken.m3u8"
    broken.write_text("not a playlist")
    with pytest.raises(ConversionError, match="ffmpeg exited"):
        await convert_hls_to_mp4(broken, tmp_path / "out.mp4", "ffmpeg", 60)


async def test_convert_without_ffmpeg_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="FFMPEG_PATH"):
        await convert_hls_to_mp4("x.m3u8", tmp_path / "o.mp4", str(tmp_path / "nope"), 5)


async def test_convert_times_out(tmp_path: Path) -> None:
    slow = tmp_path / "slow-ffmpeg"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ConversionError, match="did not finish"):
        await convert_hls_to_mp4("x.m3u8", tmp_path / "o.mp4", str(slow), 0.5)
    assert asyncio.get_running_loop().time() - started < 5


# ---------------------------------------------------------------- conversations (process level)

ARTICLE = 12345678
# The cloud Bot API refuses file paths: what the bot sends there must be uploads.
cloud_api = pytest.mark.fake_api(local=False)


def album_items(call: Call) -> list[dict[str, Any]]:
    return list(call.params["media"])


def uploaded(call: Call, ref: str | dict[str, Any]) -> bytes:
    """The bytes behind a file field or album item; asserts it came as a multipart upload."""
    upload = call.file(ref)
    assert upload.path is None, f"sent by path, not uploaded: {upload.path}"
    return bytes(upload.data)


def media_env(database_url: str, server: MediaServer, **extra: str) -> dict[str, Any]:
    return {
        "DATABASE_URL": database_url,
        "RATE_LIMIT_SECONDS": "0",
        "ANALYTICS_FLUSH_SECONDS": "0.2",
        "MEDIA_PHOTO_URL": server.photo_url,
        "MEDIA_VIDEO_URL": server.video_url,
        "TELEGRAM_API_LOCAL": "false",
        **extra,
    }


async def event_data(database_url: str, user_id: int, event_type: str) -> list[dict[str, Any]]:
    rows = await fetch(
        database_url,
        "SELECT event_data FROM shared.analytics_events"
        " WHERE telegram_id = $1 AND event_type = $2 ORDER BY id",
        user_id,
        event_type,
    )
    return [json.loads(row["event_data"]) for row in rows]


async def wait_for_event(database_url: str, user_id: int, event_type: str) -> dict[str, Any]:
    rows = await wait_for_rows(
        database_url,
        "SELECT event_data FROM shared.analytics_events WHERE telegram_id = $1 AND event_type = $2",
        user_id,
        event_type,
    )
    return dict(json.loads(rows[0]["event_data"]))


@cloud_api
async def test_article_photos_go_out_as_albums_of_ten(
    fake_api: FakeBotAPI,
    bot_process_factory: StartBot,
    database_url: str,
    media_server: MediaServer,
) -> None:
    media_server.photos[ARTICLE] = 25
    await bot_process_factory(**media_env(database_url, media_server))
    fake_api.push_message(str(ARTICLE), user_id=601)
    albums = await fake_api.wait_for_calls("sendMediaGroup", 3, chat_id=601, timeout=30)
    groups = [album_items(call) for call in albums]
    assert [len(group) for group in groups] == [10, 10, 5]
    # Uploaded as multipart files, in order, the article in the first caption only.
    assert [uploaded(call, item) for call, group in zip(albums, groups, strict=True)
            for item in group] == [photo_bytes(ARTICLE, n) for n in range(1, 26)]  # fmt: skip
    assert str(ARTICLE) in groups[0][0]["caption"]
    assert all("caption" not in item for group in groups for item in group[1:])

    assert await wait_for_event(database_url, 601, "photo_sent") == {"count": 25, "nm_id": ARTICLE}
    assert await event_data(database_url, 601, "article_request") == [{"nm_id": ARTICLE}]
    assert fake_api.calls("sendVideo", chat_id=601) == []


@cloud_api
async def test_refused_album_records_nothing_and_tells_the_user(
    fake_api: FakeBotAPI,
    bot_process_factory: StartBot,
    database_url: str,
    media_server: MediaServer,
) -> None:
    media_server.photos[ARTICLE] = 3
    await bot_process_factory(**media_env(database_url, media_server))
    fake_api.fail_next("sendMediaGroup", error_code=400, description="Bad Request: wrong file")
    fake_api.push_message(str(ARTICLE), user_id=602)
    notice = await fake_api.wait_for_call("sendMessage", chat_id=602, timeout=30)
    assert "Telegram" in notice.params["text"]
    error = await wait_for_event(database_url, 602, "error")
    assert "TelegramBadRequest" in error["error"]
    # The error event was flushed; a photo_sent tracked before it would be there as well.
    await wait_for_event(database_url, 602, "article_request")
    assert await event_data(database_url, 602, "photo_sent") == []


async def test_bad_articles_get_a_clear_answer(
    fake_api: FakeBotAPI,
    bot_process_factory: StartBot,
    database_url: str,
    media_server: MediaServer,
) -> None:
    await bot_process_factory(**media_env(database_url, media_server))
    bad = ["abc", "0", "1000000000", "12.5"]
    for user_id, text in enumerate(bad, start=603):  # one user each: no rate limit in the way
        fake_api.push_message(text, user_id=user_id)
        reply = await fake_api.wait_for_call("sendMessage", chat_id=user_id, timeout=20)
        assert "999999999" in reply.params["text"], text
    assert media_server.requests == []
    fake_api.push_message("/start", user_id=603)  # whatever was recorded is flushed with this
    await wait_for_event(database_url, 603, "user_start")
    for user_id in range(603, 603 + len(bad)):
        assert await event_data(database_url, user_id, "article_request") == []


@cloud_api
async def test_single_photo_and_video(
    fake_api: FakeBotAPI,
    bot_process_factory: StartBot,
    database_url: str,
    media_server: MediaServer,
) -> None:
    media_server.photos[ARTICLE] = 1
    media_server.videos[ARTICLE] = b"\x00\x00\x00\x18ftypmp42" + b"v" * 5000
    await bot_process_factory(**media_env(database_url, media_server))
    fake_api.push_message(str(ARTICLE), user_id=604)
    video = await fake_api.wait_for_call("sendVideo", chat_id=604, timeout=30)
    assert uploaded(video, "video") == media_server.videos[ARTICLE]
    photo = fake_api.calls("sendPhoto", chat_id=604)
    assert len(photo) == 1 and uploaded(photo[0], "photo") == photo_bytes(ARTICLE, 1)
    assert fake_api.calls("sendMediaGroup", chat_id=604) == []  # an album needs two photos
    assert await wait_for_event(database_url, 604, "video_sent") == {"nm_id": ARTICLE}
    assert await wait_for_event(database_url, 604, "photo_sent") == {"count": 1, "nm_id": ARTICLE}


async def test_nothing_found(
    fake_api: FakeBotAPI,
    bot_process_factory: StartBot,
    database_url: str,
    media_server: MediaServer,
) -> None:
    await bot_process_factory(**media_env(database_url, media_server))
    fake_api.push_message("4242", user_id=605)
    reply = await fake_api.wait_for_call("sendMessage", chat_id=605, timeout=20)
    assert "4242" in reply.params["text"]
    assert fake_api.calls("sendPhoto", chat_id=605) == []


@cloud_api
async def test_cloud_api_refuses_files_above_the_upload_limit(
    fake_api: FakeBotAPI,
    bot_process_factory: StartBot,
    database_url: str,
    media_server: MediaServer,
) -> None:
    media_server.photos[ARTICLE] = 2
    media_server.videos[ARTICLE] = b"v" * 30_000
    env = media_env(database_url, media_server, MEDIA_UPLOAD_LIMIT_MB="0.01")  # ~10 KB
    await bot_process_factory(**env)
    fake_api.push_message(str(ARTICLE), user_id=606)
    await fake_api.wait_for_call("sendMediaGroup", chat_id=606, timeout=30)
    notice = await fake_api.wait_for_call("sendMessage", chat_id=606, timeout=20)
    assert "0.01" in notice.params["text"]
    assert fake_api.calls("sendVideo", chat_id=606) == []
    await wait_for_event(database_url, 606, "photo_sent")
    assert await event_data(database_url, 606, "video_sent") == []


@cloud_api
@needs_ffmpeg
async def test_hls_video_is_converted_and_sent(
    fake_api: FakeBotAPI,
    bot_process_factory: StartBot,
    database_url: str,
    media_server: MediaServer,
    tmp_path: Path,
) -> None:
    playlist = await asyncio.to_thread(make_hls, tmp_path / "hls")
    media_server.hls_dir = playlist.parent
    media_server.hls_articles.add(ARTICLE)
    env = media_env(database_url, media_server, MEDIA_VIDEO_URL=media_server.hls_url)
    await bot_process_factory(**env)
    fake_api.push_message(str(ARTICLE), user_id=607)
    video = await fake_api.wait_for_call("sendVideo", chat_id=607, timeout=60)
    assert uploaded(video, "video")[4:8] == b"ftyp"
    assert await wait_for_event(database_url, 607, "video_sent") == {"nm_id": ARTICLE}


async def test_local_bot_api_gets_large_files_by_path(
    fake_api: FakeBotAPI,
    bot_process_factory: StartBot,
    database_url: str,
    media_server: MediaServer,
    tmp_path: Path,
) -> None:
    media_server.photos[ARTICLE] = 2
    media_server.videos[ARTICLE] = b"v" * 30_000
    shared = tmp_path / "shared"
    env = media_env(
        database_url,
        media_server,
        TELEGRAM_API_LOCAL="true",
        LOCAL_FILES_DIR=str(shared),
        MEDIA_UPLOAD_LIMIT_MB="0.01",
    )
    await bot_process_factory(**env)
    fake_api.push_message(str(ARTICLE), user_id=608)
    video = await fake_api.wait_for_call("sendVideo", chat_id=608, timeout=30)
    reference = video.params["video"]
    assert reference.startswith(f"file://{shared.resolve()}/"), reference
    # Recorded once answered, i.e. after the server read the file from the shared directory.
    assert await wait_for_event(database_url, 608, "video_sent") == {"nm_id": ARTICLE}
    assert video.file("video").data == media_server.videos[ARTICLE]
    # Small photos are still uploaded; nothing is refused.
    album = fake_api.calls("sendMediaGroup", chat_id=608)
    assert [uploaded(album[0], item) for item in album_items(album[0])] == [
        photo_bytes(ARTICLE, 1),
        photo_bytes(ARTICLE, 2),
    ]
    # Sent files are removed from the shared directory.
    await wait_until(lambda: asyncio.to_thread(lambda: list(shared.iterdir())), lambda x: not x)
