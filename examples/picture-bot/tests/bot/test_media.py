"""Media mode: article numbers, routes to the Wildberries CDN, the media source against a fake CDN
(tests/bot/fake_wb_cdn.py), ffmpeg, and whole conversations with the bot as a process."""

import asyncio
import json
import logging
import shutil
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from ecosystem_shared.testing.fake_bot_api import Call, FakeBotAPI
from ecosystem_shared.testing.media_files import stream_codecs
from ecosystem_shared.testing.telegram_fixtures import StartBot
from ecosystem_shared.testing.waiting import fetch, wait_for_rows, wait_until

from picture_bot.handlers.media import parse_article
from picture_bot.services import wb_routes
from picture_bot.services.media import (
    FALLBACK_MEDIA,
    FALLBACK_VIDEO,
    BoundedCache,
    ConversionError,
    MalformedError,
    MediaSourceError,
    MediaTooLarge,
    WbMediaSource,
    chunked,
    convert_hls_to_mp4,
    parse_card,
    parse_media_playlist,
    parse_route_map,
)
from picture_bot.settings import Settings

from .fake_wb_cdn import FakeWbCdn, make_hls, photo_bytes, sample_route_map, serve

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
ROOT = Path(__file__).resolve().parents[2]

# Articles in early, middle and late ranges of the route map (vol = nm // 100000).
EARLY = 12_345_678  # vol 123: basket-01
MIDDLE = 485_117_625  # vol 4851: basket-26 (the old table said 27); a real product URL
LATE = 1_532_076_295  # vol 15320: basket-48; a real product URL
PAST = 1_900_012_345  # vol 19000: past the table's last range (vol 18821)


@pytest.fixture(scope="session")
def hls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    return make_hls(tmp_path_factory.mktemp("hls")).parent


@pytest.fixture
async def cdn() -> AsyncIterator[FakeWbCdn]:
    async with serve(FakeWbCdn()) as server:
        yield server


def source_for(cdn: FakeWbCdn, tmp_path: Path, **options: Any) -> WbMediaSource:
    defaults: dict[str, Any] = {
        "route_map_url": cdn.route_map_url,
        "photo_base_url": cdn.base_url,
        "video_base_url": cdn.base_url,
        "route_map_file": tmp_path / "route-map.json",
        "work_root": tmp_path / "files",
        "timeout": 10,
        "rate_delay": 0,
        "retry_base": 0.01,
    }
    return WbMediaSource(**(defaults | options))


class Recorder:
    """An on_error sink that keeps what it was told."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    async def __call__(self, message: str) -> None:
        self.errors.append(message)


@pytest.fixture
async def started(cdn: FakeWbCdn, tmp_path: Path) -> AsyncIterator[WbMediaSource]:
    source = source_for(cdn, tmp_path)
    await source.start()
    try:
        yield source
    finally:
        await source.close()


# ---------------------------------------------------------------- article numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("12345678", 12345678),
        ("  1  ", 1),
        ("1532076295", 1532076295),  # current articles have 10 digits
        ("9999999999", 9999999999),
        ("000042", 42),
        ("https://www.wildberries.ru/catalog/12345678/detail.aspx", 12345678),
        ("look: wildberries.ru/catalog/87654321/detail.aspx?size=1", 87654321),
        ("0", None),
        ("10000000000", None),
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


@given(st.integers(min_value=1, max_value=9_999_999_999))
def test_every_valid_article_parses(nm_id: int) -> None:
    assert parse_article(str(nm_id)) == nm_id


@given(st.integers().filter(lambda n: not 1 <= n <= 9_999_999_999))
def test_every_impossible_article_is_refused(nm_id: int) -> None:
    assert parse_article(str(nm_id)) is None


def test_chunking_respects_the_album_size() -> None:
    assert [len(chunk) for chunk in chunked(list(range(25)))] == [10, 10, 5]
    assert [len(chunk) for chunk in chunked(list(range(21)))] == [10, 10, 1]
    assert list(chunked([])) == []


# ---------------------------------------------------------------- routes, cards, playlists


def test_fallback_table_is_true_to_the_route_map() -> None:
    # The example: vol 4851 is served by basket-26 (an old table said 27).
    assert FALLBACK_MEDIA.host_for(MIDDLE // 100_000) == "basket-26.wbbasket.ru"
    assert FALLBACK_MEDIA.host_for(0) == FALLBACK_MEDIA.host_for(143) == "basket-01.wbbasket.ru"
    assert FALLBACK_MEDIA.host_for(144) == "basket-02.wbbasket.ru"
    assert FALLBACK_MEDIA.host_for(LATE // 100_000) == "basket-48.wbbasket.ru"
    assert FALLBACK_MEDIA.host_for(16412) == "basket-49.wbbasket.ru"  # a real product URL
    assert FALLBACK_MEDIA.host_for(PAST // 100_000) is None  # past the table: probed
    # Videos by nm % 144, twelve hosts (real product URLs: vol 137 on 12, vol 63 on 06).
    assert FALLBACK_VIDEO.host_for(225577433 % 144) == "videonme-basket-12.wbbasket.ru"
    assert FALLBACK_VIDEO.host_for(188367183 % 144) == "videonme-basket-06.wbbasket.ru"
    assert FALLBACK_VIDEO.last_vol == 143


def test_route_map_validation() -> None:
    maps = parse_route_map(sample_route_map())
    assert maps.media == FALLBACK_MEDIA and maps.video == FALLBACK_VIDEO and not maps.problems

    def media_map(*routes: dict[str, Any]) -> dict[str, Any]:
        return {"origin": {"mediabasket_route_map": list(routes)}}

    def hosts(*ranges: tuple[int, int]) -> list[dict[str, Any]]:
        return [{"vol_range_from": a, "vol_range_to": b, "host": f"basket-{i:02d}.x"}
                for i, (a, b) in enumerate(ranges, start=1)]  # fmt: skip

    bad = {
        "gap": media_map({"method": "range", "hosts": hosts((0, 143), (145, 287))}),
        "overlap": media_map({"method": "range", "hosts": hosts((0, 143), (143, 287))}),
        "is empty": media_map({"method": "range", "hosts": hosts((0, 143), (144, 100))}),
        "'range', expected one": media_map(
            {"method": "range", "hosts": hosts((0, 1))}, {"method": "range", "hosts": hosts((0, 1))}
        ),
        "not an integer": media_map(
            {"method": "range", "hosts": [{"vol_range_from": "0", "vol_range_to": 9, "host": "h"}]}
        ),
        "not a host name": media_map(
            {"method": "range", "hosts": [{"vol_range_from": 0, "vol_range_to": 9, "host": "a/b"}]}
        ),
        "no 'origin'": {"mediabasket_route_map": []},
    }
    for reason, payload in bad.items():
        with pytest.raises(MalformedError, match=reason):
            parse_route_map(payload)
    # A map of another method is a hint, never a table.
    hinted = media_map(
        {"method": "range", "hosts": hosts((0, 143))},
        {"method": "mod", "hosts": [{"host": "basket-90.x"}]},
    )
    maps = parse_route_map(hinted)
    assert maps.media_hints == ("basket-90.x",) and maps.video is None and maps.problems


def test_card_and_playlist_parsing() -> None:
    card = parse_card(b'{"nm_id": 5, "media": {"photo_count": 3, "has_video": true}}')
    assert (card.nm_id, card.photo_count, card.has_video) == (5, 3, True)
    for body in (b"<html>", b"[]", b'{"nm_id": 5}', b'{"nm_id": "5", "media": {"photo_count": 1}}',
                 b'{"nm_id": 5, "media": {"photo_count": -1}}'):  # fmt: skip
        with pytest.raises(MalformedError):
            parse_card(body)
    url = "http://h/vol1/part2/3/hls/1440p/index.m3u8"
    _, segments = parse_media_playlist("#EXTM3U\n#EXTINF:1,\n1.ts\n#EXTINF:1,\n2.ts\n", url)
    assert segments == [
        "http://h/vol1/part2/3/hls/1440p/1.ts",
        "http://h/vol1/part2/3/hls/1440p/2.ts",
    ]
    for text, reason in [
        ("<html>", "not an M3U8"),
        ("#EXTM3U\n#EXT-X-ENDLIST\n", "no segments"),
        ("#EXTM3U\nhttp://elsewhere/1.ts\n", "another host"),
        ('#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI="k"\n1.ts\n', "encrypted"),
        ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n", "unsupported"),
    ]:
        with pytest.raises(MalformedError, match=reason):
            parse_media_playlist(text, url)


def test_bounded_cache() -> None:
    cache: BoundedCache[int, str] = BoundedCache(2)
    cache.put(1, "a")
    cache.put(2, "b")
    assert cache.get(1) == "a"  # 1 is now the most recent
    cache.put(3, "c")
    assert (cache.get(1), cache.get(2), cache.get(3), len(cache)) == ("a", None, "c", 2)
    expiring: BoundedCache[int, str] = BoundedCache(2, ttl=0)
    expiring.put(1, "a")
    assert expiring.get(1) is None


def test_settings_of_the_cdn() -> None:
    settings = Settings(BOT_TOKEN="1:x")
    assert (settings.WB_API_TIMEOUT, settings.WB_RATE_LIMIT_DELAY) == (30.0, 0.01)
    assert settings.HLS_MAX_VIDEO_SIZE_MB == 100.0
    assert settings.WB_PHOTO_BASE_URL == settings.WB_VIDEO_BASE_URL == "https://{host}"
    assert Settings(BOT_TOKEN="1:x", WB_ROUTE_MAP_URL=" ").WB_ROUTE_MAP_URL is None
    for name, value in [
        ("WB_PHOTO_BASE_URL", "https://mirror.example/"),
        ("WB_PHOTO_BASE_URL", "https://{host}/{vol}"),
        ("WB_VIDEO_BASE_URL", "ftp://{host}"),
        ("WB_ROUTE_MAP_URL", "cdn.wbbasket.ru"),
        ("WB_RATE_LIMIT_DELAY", "-1"),
    ]:
        with pytest.raises(ValidationError, match=name):
            Settings.model_validate({"BOT_TOKEN": "1:x", name: value})


def run_update_script(*args: str) -> subprocess.CompletedProcess[str]:
    script = ROOT / "scripts" / "update_wb_routes.py"
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=60
    )


def test_fallback_table_is_regenerated_from_the_saved_route_map(tmp_path: Path) -> None:
    output = tmp_path / "wb_routes.py"
    saved = str(Path(__file__).with_name("wb_route_map_sample.json"))
    result = run_update_script(saved, "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert "52 photo ranges" in result.stdout
    assert output.read_text() == Path(wb_routes.__file__).read_text()

    broken = tmp_path / "broken.json"
    payload = sample_route_map()
    payload["origin"]["mediabasket_route_map"][0]["hosts"].pop(3)  # a gap
    broken.write_text(json.dumps(payload))
    result = run_update_script(str(broken), "--output", str(output))
    assert result.returncode == 1 and "a gap before vol 720" in result.stderr
    assert output.read_text() == Path(wb_routes.__file__).read_text()  # left as it was


# ---------------------------------------------------------------- the source and the fake CDN


def card_hosts(cdn: FakeWbCdn, nm_id: int) -> list[str]:
    return [path.split("/")[0] for path in cdn.requested(f"/{nm_id}/info/ru/card.json")]


async def test_right_host_for_early_middle_and_late_articles(
    cdn: FakeWbCdn, started: WbMediaSource
) -> None:
    for nm_id, basket in [(EARLY, "01"), (MIDDLE, "26"), (LATE, "48")]:
        host = f"basket-{basket}.wbbasket.ru"
        cdn.add(nm_id, photos=2)
        bundle = await started.fetch(nm_id)
        assert [p.path.read_bytes() for p in bundle.photos] == [
            photo_bytes(host, nm_id, n) for n in (1, 2)
        ]
        assert card_hosts(cdn, nm_id) == [host]  # straight there, no probing
        assert bundle.video is None and not bundle.failed and not bundle.problems
        bundle.cleanup()
    assert cdn.requested("upstreams") == ["cdn.wbbasket.ru/api/v3/upstreams"]


async def test_live_route_map_wins_and_its_copy_is_kept(cdn: FakeWbCdn, tmp_path: Path) -> None:
    # The live map knows a basket the built-in table does not.
    cdn.route_map["origin"]["mediabasket_route_map"][0]["hosts"].append(
        {"vol_range_from": 18822, "vol_range_to": 19589, "host": "basket-53.wbbasket.ru"}
    )
    cdn.add(PAST, host="basket-53.wbbasket.ru", photos=1)
    source = source_for(cdn, tmp_path)
    await source.start()
    try:
        bundle = await source.fetch(PAST)
        assert len(bundle.photos) == 1 and card_hosts(cdn, PAST) == ["basket-53.wbbasket.ru"]
        bundle.cleanup()
    finally:
        await source.close()
    # The route map goes down: the next start uses the copy on disk, not the built-in table.
    cdn.route_map_status = 503
    again = source_for(cdn, tmp_path)
    await again.start()
    try:
        await again.routes.wait_loaded(10)
        assert again.routes.origin.startswith("the copy in")
        assert again.routes.expected_host(PAST // 100_000) == "basket-53.wbbasket.ru"
    finally:
        await again.close()


async def test_route_map_down_uses_the_fallback_table(cdn: FakeWbCdn, tmp_path: Path) -> None:
    cdn.route_map_status = 503
    cdn.add(MIDDLE, photos=1)
    recorder = Recorder()
    source = source_for(cdn, tmp_path, on_error=recorder)
    await source.start()
    try:
        bundle = await source.fetch(MIDDLE)
        assert len(bundle.photos) == 1 and card_hosts(cdn, MIDDLE) == ["basket-26.wbbasket.ru"]
        bundle.cleanup()
        assert len(cdn.requested("upstreams")) == 4  # retried with backoff, then given up
        assert source.routes.origin == "the fallback table"
        assert recorder.errors == []  # unreachable is not malformed: logged only
    finally:
        await source.close()


@pytest.mark.parametrize(
    "body", [b"{not json", b'{"origin": {}}', b'{"origin": {"mediabasket_route_map": "x"}}']
)
async def test_malformed_route_map_falls_back_and_is_reported(
    cdn: FakeWbCdn, tmp_path: Path, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    cdn.route_map_body = body
    cdn.add(MIDDLE, photos=1)
    recorder = Recorder()
    source = source_for(cdn, tmp_path, on_error=recorder)
    with caplog.at_level(logging.WARNING):
        await source.start()
        try:
            bundle = await source.fetch(MIDDLE)
            assert len(bundle.photos) == 1  # from the fallback table's host
            bundle.cleanup()
        finally:
            await source.close()
    assert len(recorder.errors) == 1 and "route map malformed" in recorder.errors[0]
    assert "route map malformed" in caplog.text
    assert not (tmp_path / "route-map.json").exists()  # a bad map is never kept


async def test_past_the_table_probing_finds_the_host_and_remembers_it(
    cdn: FakeWbCdn, started: WbMediaSource
) -> None:
    cdn.add(PAST, host="basket-55.wbbasket.ru", photos=1)
    cdn.fail_next("basket-53.wbbasket.ru/", 503, 503, 503, 503)  # a probed host in trouble
    bundle = await started.fetch(PAST)
    assert [p.path.read_bytes() for p in bundle.photos] == [
        photo_bytes("basket-55.wbbasket.ru", PAST, 1)
    ]
    # The last basket of the table, then newer ones; basket-53 retried, then passed over.
    assert card_hosts(cdn, PAST) == [
        f"basket-{n}.wbbasket.ru" for n in (52, 53, 53, 53, 53, 54, 55)
    ]
    bundle.cleanup()
    # Another article of the same vol goes straight to the host found.
    cdn.add(PAST + 1, host="basket-55.wbbasket.ru", photos=1)
    (await started.fetch(PAST + 1)).cleanup()
    assert card_hosts(cdn, PAST + 1) == ["basket-55.wbbasket.ru"]


async def test_404_on_the_expected_host_probes_neighbours(
    cdn: FakeWbCdn, started: WbMediaSource
) -> None:
    cdn.add(MIDDLE, host="basket-25.wbbasket.ru", photos=1)  # moved to a neighbour
    bundle = await started.fetch(MIDDLE)
    assert len(bundle.photos) == 1
    assert card_hosts(cdn, MIDDLE) == [f"basket-{n}.wbbasket.ru" for n in (26, 27, 25)]
    bundle.cleanup()
    assert started.routes.expected_host(MIDDLE // 100_000) == "basket-25.wbbasket.ru"


async def test_a_card_of_another_article_on_a_wrong_host_is_never_sent(
    cdn: FakeWbCdn, started: WbMediaSource
) -> None:
    # basket-26 answers for MIDDLE with the card (and photos) of another product.
    cdn.add(MIDDLE, photos=3, card=json.dumps({"nm_id": 111, "media": {"photo_count": 3}}).encode())
    bundle = await started.fetch(MIDDLE)
    assert bundle.empty and not bundle.failed
    assert any("is of article 111" in problem for problem in bundle.problems)
    assert cdn.requested("/images/") == []  # not one of its photos fetched
    assert len(card_hosts(cdn, MIDDLE)) > 1  # other hosts were tried for the real one
    bundle.cleanup()


async def test_photo_count_comes_from_the_card(cdn: FakeWbCdn, started: WbMediaSource) -> None:
    product = cdn.add(EARLY, photos=5)
    product.card = json.dumps({"nm_id": EARLY, "media": {"photo_count": 3}}).encode()
    bundle = await started.fetch(EARLY)
    assert len(bundle.photos) == 3 and bundle.video is None
    assert len(cdn.requested("/images/")) == 3  # no probing past the count
    assert cdn.requested("/hls/") == []  # has_video absent: no video asked for
    bundle.cleanup()


async def test_malformed_card_falls_back_to_probing(cdn: FakeWbCdn, started: WbMediaSource) -> None:
    cdn.add(EARLY, photos=3, card=b"<html>oops</html>")
    bundle = await started.fetch(EARLY)
    assert len(bundle.photos) == 3  # found by probing 1.webp, 2.webp... until a 404
    assert any("card.json" in problem and "malformed" in problem for problem in bundle.problems)
    bundle.cleanup()


async def test_retries_with_backoff_on_429_and_5xx(cdn: FakeWbCdn, started: WbMediaSource) -> None:
    cdn.add(EARLY, photos=1)
    cdn.fail_next(f"{EARLY}/info/ru/card.json", 429, 503)
    cdn.fail_next(f"{EARLY}/images/big/1.webp", 502)
    bundle = await started.fetch(EARLY)
    assert len(bundle.photos) == 1 and not bundle.failed
    assert len(cdn.requested(f"{EARLY}/info/ru/card.json")) == 3
    bundle.cleanup()
    cdn.add(MIDDLE, photos=1)
    cdn.fail_next(f"{MIDDLE}/info/ru/card.json", 500, 500, 500, 500)
    with pytest.raises(MediaSourceError, match="HTTP 500"):
        await started.fetch(MIDDLE)


async def test_identical_requests_are_coalesced_and_cached(
    cdn: FakeWbCdn, started: WbMediaSource
) -> None:
    cdn.add(EARLY, photos=2)
    first, second = await asyncio.gather(started.fetch(EARLY), started.fetch(EARLY))
    assert len(cdn.requested("/info/ru/card.json")) == 1
    assert len(cdn.requested("/images/")) == 2  # each photo downloaded once for both
    assert first.directory == second.directory and first.directory is not None
    directory = first.directory
    first.cleanup()
    assert all(photo.path.exists() for photo in second.photos)  # still needed by the other
    second.cleanup()
    assert not directory.exists()
    # A later request reuses the resolved article: no card.json again.
    (await started.fetch(EARLY)).cleanup()
    assert len(cdn.requested("/info/ru/card.json")) == 1


async def test_photos_above_the_limit_are_refused(cdn: FakeWbCdn, tmp_path: Path) -> None:
    cdn.add(EARLY, photos=2, photo_size=300_000)
    source = source_for(cdn, tmp_path, max_bytes=100_000)
    await source.start()
    try:
        bundle = await source.fetch(EARLY)
        assert bundle.photos == [] and bundle.too_large == ["photo 1", "photo 2"]
        assert bundle.directory is not None and list(bundle.directory.iterdir()) == []
        # Private to the bot's user, which a Local Bot API server shares (BOT_UID=101).
        assert stat.S_IMODE(bundle.directory.stat().st_mode) == 0o700
        assert bundle.directory.parent == tmp_path / "files"
        bundle.cleanup()
    finally:
        await source.close()


@needs_ffmpeg
async def test_video_best_quality_first_with_fallback(
    cdn: FakeWbCdn, started: WbMediaSource, hls_dir: Path
) -> None:
    cdn.hls_dir = hls_dir
    cdn.add(LATE, photos=1, video_qualities=("1080p", "720p"))
    cdn.playlists[LATE, "1080p"] = "#EXTM3U\nhttp://elsewhere.example/1.ts\n"  # malformed
    bundle = await started.fetch(LATE)
    assert bundle.video is not None and is_mp4(bundle.video.path)
    codecs = await asyncio.to_thread(stream_codecs, bundle.video.path)
    assert codecs == ["aac", "h264"]  # stream copy
    # 1440p first (absent), then 1080p (malformed), then 720p; on the video host of nm % 144.
    playlists = [path for path in cdn.requested("/hls/") if path.endswith("index.m3u8")]
    assert playlists == [
        f"videonme-basket-09.wbbasket.ru/vol103/part153207/{LATE}/hls/{quality}/index.m3u8"
        for quality in ("1440p", "1080p", "720p")
    ]
    assert any("playlist" in problem and "another host" in problem for problem in bundle.problems)
    bundle.cleanup()


@needs_ffmpeg
async def test_video_above_the_size_limit_is_refused(
    cdn: FakeWbCdn, tmp_path: Path, hls_dir: Path
) -> None:
    cdn.hls_dir = hls_dir
    cdn.add(EARLY, video_qualities=("1440p", "720p"))
    source = source_for(cdn, tmp_path, max_video_bytes=1000)
    await source.start()
    try:
        bundle = await source.fetch(EARLY)
        assert bundle.video is None and bundle.too_large == ["video"] and not bundle.failed
        assert bundle.directory is not None and list(bundle.directory.iterdir()) == []
        bundle.cleanup()
    finally:
        await source.close()


# ---------------------------------------------------------------- ffmpeg


def is_mp4(path: Path) -> bool:
    return path.read_bytes()[4:8] == b"ftyp"


@needs_ffmpeg
async def test_convert_hls_to_mp4(tmp_path: Path, hls_dir: Path) -> None:
    dest = await convert_hls_to_mp4(hls_dir / "index.m3u8", tmp_path / "out.mp4", "ffmpeg", 60)
    assert dest == tmp_path / "out.mp4" and is_mp4(dest)
    with pytest.raises(MediaTooLarge):
        await convert_hls_to_mp4(
            hls_dir / "index.m3u8", tmp_path / "big.mp4", "ffmpeg", 60, max_bytes=1000
        )
    assert not (tmp_path / "big.mp4").exists()
    broken = tmp_path / "broken.m3u8"
    broken.write_text("not a playlist")
    with pytest.raises(ConversionError, match="ffmpeg exited"):
        await convert_hls_to_mp4(broken, tmp_path / "out2.mp4", "ffmpeg", 60)


async def test_convert_without_ffmpeg_or_in_time_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="FFMPEG_PATH"):
        await convert_hls_to_mp4("x.m3u8", tmp_path / "o.mp4", str(tmp_path / "nope"), 5)
    slow = tmp_path / "slow-ffmpeg"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    started = asyncio.get_running_loop().time()
    with pytest.raises(ConversionError, match="did not finish"):
        await convert_hls_to_mp4("x.m3u8", tmp_path / "o.mp4", str(slow), 0.5)
    assert asyncio.get_running_loop().time() - started < 5


# ---------------------------------------------------------------- conversations (process level)

# The cloud Bot API refuses file paths: what the bot sends there must be uploads.
cloud_api = pytest.mark.fake_api(local=False)


def album_items(call: Call) -> list[dict[str, Any]]:
    return list(call.params["media"])


def uploaded(call: Call, ref: str | dict[str, Any]) -> bytes:
    """The bytes behind a file field or album item; asserts it came as a multipart upload."""
    upload = call.file(ref)
    assert upload.path is None, f"sent by path, not uploaded: {upload.path}"
    return bytes(upload.data)


@pytest.fixture
def media_env(database_url: str, cdn: FakeWbCdn, tmp_path: Path) -> Iterator[dict[str, Any]]:
    yield {
        "DATABASE_URL": database_url,
        "RATE_LIMIT_SECONDS": "0",
        "ANALYTICS_FLUSH_SECONDS": "0.2",
        "WB_ROUTE_MAP_URL": cdn.route_map_url,
        "WB_ROUTE_MAP_FILE": str(tmp_path / "route-map.json"),
        "WB_PHOTO_BASE_URL": cdn.base_url,
        "WB_VIDEO_BASE_URL": cdn.base_url,
        "WB_RATE_LIMIT_DELAY": "0",
        "TELEGRAM_API_LOCAL": "false",
    }


async def event_data(database_url: str, user_id: int | None, event_type: str) -> list[Any]:
    rows = await fetch(
        database_url,
        "SELECT event_data FROM shared.analytics_events"
        " WHERE telegram_id IS NOT DISTINCT FROM $1 AND event_type = $2 ORDER BY id",
        user_id,
        event_type,
    )
    return [json.loads(row["event_data"]) for row in rows]


async def wait_for_event(database_url: str, user_id: int | None, event_type: str) -> Any:
    rows = await wait_for_rows(
        database_url,
        "SELECT event_data FROM shared.analytics_events"
        " WHERE telegram_id IS NOT DISTINCT FROM $1 AND event_type = $2",
        user_id,
        event_type,
    )
    return json.loads(rows[0]["event_data"])


@cloud_api
@pytest.mark.slow
async def test_article_photos_go_out_as_albums_of_ten(
    fake_api: FakeBotAPI,
    bot_process_factory: StartBot,
    database_url: str,
    cdn: FakeWbCdn,
    media_env: dict[str, Any],
) -> None:
    cdn.add(MIDDLE, photos=25)
    await bot_process_factory(**media_env)
    fake_api.push_message(str(MIDDLE), user_id=601)
    albums = await fake_api.wait_for_calls("sendMediaGroup", 3, chat_id=601, timeout=30)
    groups = [album_items(call) for call in albums]
    assert [len(group) for group in groups] == [10, 10, 5]
    # Uploaded as multipart files, in order, from basket-26, the article in the first caption.
    assert [uploaded(call, item) for call, group in zip(albums, groups, strict=True)
            for item in group] == [photo_bytes("basket-26.wbbasket.ru", MIDDLE, n)
                                   for n in range(1, 26)]  # fmt: skip
    assert str(MIDDLE) in groups[0][0]["caption"]
    assert all("caption" not in item for group in groups for item in group[1:])

    assert await wait_for_event(database_url, 601, "photo_sent") == {"count": 25, "nm_id": MIDDLE}
    assert await event_data(database_url, 601, "article_request") == [{"nm_id": MIDDLE}]
    assert fake_api.calls("sendVideo", chat_id=601) == []


@pytest.mark.slow
@cloud_api
@needs_ffmpeg
async def test_video_is_delivered_as_mp4(
    fake_api: FakeBotAPI,
    bot_process_factory: StartBot,
    database_url: str,
    cdn: FakeWbCdn,
    media_env: dict[str, Any],
    hls_dir: Path,
    tmp_path: Path,
) -> None:
    cdn.hls_dir = hls_dir
    cdn.add(LATE, photos=1, video_qualities=("1440p", "1080p"))
    cdn.playlists[LATE, "1440p"] = "<html>not a playlist</html>"
    await bot_process_factory(**media_env)
    fake_api.push_message(f"https://www.wildberries.ru/catalog/{LATE}/detail.aspx", user_id=602)
    video = await fake_api.wait_for_call("sendVideo", chat_id=602, timeout=60)
    sent = tmp_path / "sent.mp4"
    sent.write_bytes(uploaded(video, "video"))
    assert is_mp4(sent) and await asyncio.to_thread(stream_codecs, sent) == ["aac", "h264"]
    photo = fake_api.calls("sendPhoto", chat_id=602)
    assert uploaded(photo[0], "photo") == photo_bytes("basket-48.wbbasket.ru", LATE, 1)
    assert await wait_for_event(database_url, 602, "video_sent") == {"nm_id": LATE}
    assert await wait_for_event(database_url, 602, "photo_sent") == {"count": 1, "nm_id": LATE}
    # The malformed 1440p playlist cost the user nothing but is on record.
    error = await wait_for_event(database_url, 602, "error")
    assert "1440p/index.m3u8 malformed: not an M3U8 playlist" in error["error"]


@pytest.mark.slow
async def test_malformed_route_map_is_an_error_event_and_photos_still_come(
    fake_api: FakeBotAPI,
    bot_process_factory: StartBot,
    database_url: str,
    cdn: FakeWbCdn,
    media_env: dict[str, Any],
) -> None:
    cdn.route_map_body = b'{"origin": {"mediabasket_route_map": [{"method": "range"}]}}'
    cdn.add(MIDDLE, photos=1)
    bot = await bot_process_factory(**media_env)
    fake_api.push_message(str(MIDDLE), user_id=603)
    await fake_api.wait_for_call("sendPhoto", chat_id=603, timeout=30)
    error = await wait_for_event(database_url, None, "error")
    assert "route map malformed" in error["error"]
    await bot.wait_for_output("route map malformed")


@pytest.mark.slow
@cloud_api
async def test_refused_album_records_nothing_and_tells_the_user(
    fake_api: FakeBotAPI,
    bot_process_factory: StartBot,
    database_url: str,
    cdn: FakeWbCdn,
    media_env: dict[str, Any],
) -> None:
    cdn.add(EARLY, photos=3)
    await bot_process_factory(**media_env)
    fake_api.fail_next("sendMediaGroup", error_code=400, description="Bad Request: wrong file")
    fake_api.push_message(str(EARLY), user_id=604)
    notice = await fake_api.wait_for_call("sendMessage", chat_id=604, timeout=30)
    assert "Telegram" in notice.params["text"]
    error = await wait_for_event(database_url, 604, "error")
    assert "TelegramBadRequest" in error["error"]
    await wait_for_event(database_url, 604, "article_request")
    assert await event_data(database_url, 604, "photo_sent") == []


@pytest.mark.slow
async def test_impossible_articles_and_missing_ones_get_a_clear_answer(
    fake_api: FakeBotAPI,
    bot_process_factory: StartBot,
    database_url: str,
    cdn: FakeWbCdn,
    media_env: dict[str, Any],
) -> None:
    await bot_process_factory(**media_env)
    bad = ["abc", "0", "-5", "10000000000", "12.5"]
    for user_id, text in enumerate(bad, start=610):  # one user each: no rate limit in the way
        fake_api.push_message(text, user_id=user_id)
        reply = await fake_api.wait_for_call("sendMessage", chat_id=user_id, timeout=20)
        assert "9999999999" in reply.params["text"], text
    assert cdn.requested("/vol") == []
    fake_api.push_message("4242", user_id=620)  # a possible article that does not exist
    reply = await fake_api.wait_for_call("sendMessage", chat_id=620, timeout=20)
    assert "4242" in reply.params["text"]
    assert fake_api.calls("sendPhoto", chat_id=620) == []
    await wait_for_event(database_url, 620, "article_request")
    for user_id in range(610, 610 + len(bad)):
        assert await event_data(database_url, user_id, "article_request") == []


@cloud_api
@pytest.mark.slow
async def test_cloud_api_refuses_files_above_the_upload_limit(
    fake_api: FakeBotAPI,
    bot_process_factory: StartBot,
    database_url: str,
    cdn: FakeWbCdn,
    media_env: dict[str, Any],
) -> None:
    cdn.add(EARLY, photos=2, photo_size=20_000)
    await bot_process_factory(**media_env | {"MEDIA_UPLOAD_LIMIT_MB": "0.01"})  # ~10 KB
    fake_api.push_message(str(EARLY), user_id=621)
    notice = await fake_api.wait_for_call("sendMessage", chat_id=621, timeout=30)
    assert "0.01" in notice.params["text"]
    assert fake_api.calls("sendMediaGroup", chat_id=621) == []
    await wait_for_event(database_url, 621, "article_request")
    assert await event_data(database_url, 621, "photo_sent") == []


@pytest.mark.slow
@needs_ffmpeg
async def test_local_bot_api_gets_large_files_by_path(
    fake_api: FakeBotAPI,
    bot_process_factory: StartBot,
    database_url: str,
    cdn: FakeWbCdn,
    media_env: dict[str, Any],
    hls_dir: Path,
    tmp_path: Path,
) -> None:
    cdn.hls_dir = hls_dir
    cdn.add(EARLY, photos=2, video_qualities=("1440p",))
    shared = tmp_path / "shared"
    env = media_env | {
        "TELEGRAM_API_LOCAL": "true",
        "LOCAL_FILES_DIR": str(shared),
        "MEDIA_UPLOAD_LIMIT_MB": "0.01",  # ~10 KB: the video (tens of KB) goes by path
    }
    await bot_process_factory(**env)
    fake_api.push_message(str(EARLY), user_id=622)
    video = await fake_api.wait_for_call("sendVideo", chat_id=622, timeout=60)
    reference = video.params["video"]
    assert reference.startswith(f"file://{shared.resolve()}/"), reference
    # Recorded once answered, i.e. after the server read the file from the shared directory.
    assert await wait_for_event(database_url, 622, "video_sent") == {"nm_id": EARLY}
    assert video.file("video").data[4:8] == b"ftyp"
    # Small photos are still uploaded; nothing is refused.
    album = fake_api.calls("sendMediaGroup", chat_id=622)
    assert [uploaded(album[0], item) for item in album_items(album[0])] == [
        photo_bytes("basket-01.wbbasket.ru", EARLY, 1),
        photo_bytes("basket-01.wbbasket.ru", EARLY, 2),
    ]
    # Sent files are removed from the shared directory.
    await wait_until(lambda: asyncio.to_thread(lambda: list(shared.iterdir())), lambda x: not x)
