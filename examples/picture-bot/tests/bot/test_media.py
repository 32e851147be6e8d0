"""Media mode: the article parser, the HTTP media source, ffmpeg, and whole conversations."""

import asyncio
import shutil
import stat
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

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
