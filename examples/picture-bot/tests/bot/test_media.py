"""Media mode: article numbers, the CDN settings, the route table script, and whole conversations
with the bot as a process against the fake CDN (ecosystem_shared/testing/fake_wb_cdn.py). The
Wildberries client itself is tested in tests/shared/test_wildberries.py."""

import asyncio
import json
import shutil
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
from ecosystem_shared.testing.fake_wb_cdn import (
    EARLY,
    LATE,
    MIDDLE,
    SAMPLE_ROUTE_MAP,
    FakeWbCdn,
    make_hls,
    photo_bytes,
    sample_route_map,
    serve,
)
from ecosystem_shared.testing.media_files import stream_codecs
from ecosystem_shared.testing.telegram_fixtures import StartBot
from ecosystem_shared.testing.waiting import fetch, wait_for_rows, wait_until
from ecosystem_shared.wildberries import route_table

from picture_bot.handlers.media import parse_article
from picture_bot.settings import Settings

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def hls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    return make_hls(tmp_path_factory.mktemp("hls")).parent


@pytest.fixture
async def cdn() -> AsyncIterator[FakeWbCdn]:
    async with serve(FakeWbCdn()) as server:
        yield server


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
    output = tmp_path / "route_table.py"
    saved = str(SAMPLE_ROUTE_MAP)
    result = run_update_script(saved, "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert "52 photo ranges" in result.stdout
    assert output.read_text() == Path(route_table.__file__).read_text()

    broken = tmp_path / "broken.json"
    payload = sample_route_map()
    payload["origin"]["mediabasket_route_map"][0]["hosts"].pop(3)  # a gap
    broken.write_text(json.dumps(payload))
    result = run_update_script(str(broken), "--output", str(output))
    assert result.returncode == 1 and "a gap before vol 720" in result.stderr
    assert output.read_text() == Path(route_table.__file__).read_text()  # left as it was


def is_mp4(path: Path) -> bool:
    return path.read_bytes()[4:8] == b"ftyp"


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
