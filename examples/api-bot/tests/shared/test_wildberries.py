"""The Wildberries client (ecosystem_shared/wildberries) against the fake CDN
(ecosystem_shared/testing/fake_wb_cdn.py): route maps and tables, card.json, playlists, retries,
probing, size limits and ffmpeg. The bot's conversations are in tests/bot (media bots)."""

import asyncio
import json
import logging
import shutil
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ecosystem_shared.testing.fake_wb_cdn import (
    EARLY,
    LATE,
    MIDDLE,
    PAST,
    FakeWbCdn,
    make_hls,
    photo_bytes,
    sample_route_map,
    serve,
)
from ecosystem_shared.testing.media_files import stream_codecs
from ecosystem_shared.wildberries import (
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

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


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
