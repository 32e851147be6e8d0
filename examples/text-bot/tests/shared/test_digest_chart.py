"""The digest chart: 14 days per bot, legible, drawn in a subprocess, never costing the digest.

Figures are inspected in this test process (matplotlib may load here, never in a bot: the last
test checks that); the chart that bots send is drawn by ``python -m ecosystem_shared.chart``.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy
import pytest
from matplotlib import font_manager
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from ecosystem_shared.analytics import Analytics, BotStats, DailyStats
from ecosystem_shared.chart import DPI, FONT, WIDTH_INCHES, build_figure, render
from ecosystem_shared.db import Database
from ecosystem_shared.digest_chart import ChartService, run_chart_process
from ecosystem_shared.migrations import shared_migrations
from ecosystem_shared.notifications import (
    CAPTION_LIMIT,
    Notifier,
    format_digest,
    send_report,
    visible_length,
)
from ecosystem_shared.stats import BotSeries, ChartData, chart_days, query_chart_data
from ecosystem_shared.testing.activity import insert_activity, synthetic_series
from ecosystem_shared.testing.fake_bot_api import FakeBotAPI
from ecosystem_shared.testing.telegram_fixtures import bot_for
from ecosystem_shared.testing.waiting import fetch
from ecosystem_shared.texts import shared_texts

ZONE = "Europe/Moscow"  # UTC+3 all year
END = datetime(2026, 3, 10, 6, 0, tzinfo=UTC)  # 09:00 in Moscow: 24.02-09.03 are drawn
DAYS = chart_days(END, ZONE)
CHANNEL = -1001234567890
PNG = b"\x89PNG\r\n\x1a\n"
CHART_TIMEOUT = 60.0  # importing matplotlib on a busy machine


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG) and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def drawn_texts(figure: Figure) -> list[tuple[str, Bbox]]:
    """Every visible non-empty text with its box in pixels, after a full draw."""
    figure.draw_without_rendering()
    return [
        (text.get_text(), text.get_window_extent())
        for text in figure.findobj(Text)
        if text.get_visible() and text.get_text().strip()
    ]


def assert_legible(figure: Figure) -> list[str]:
    """No two texts overlap, all lie inside the image, none is smaller than 8 pt; the texts."""
    texts = drawn_texts(figure)
    inside = figure.bbox.padded(1)
    for number, (text, box) in enumerate(texts):
        assert inside.contains(box.x0, box.y0) and inside.contains(box.x1, box.y1), text
        for other, other_box in texts[number + 1 :]:
            assert not box.overlaps(other_box), f"{text!r} overlaps {other!r}"
    sizes = [float(t.get_fontsize()) for t in figure.findobj(Text) if t.get_text().strip()]
    assert min(sizes) >= 8
    return [text for text, _ in texts]


def legend_labels(figure: Figure) -> list[str]:
    [legend] = figure.legends
    assert isinstance(legend, Legend)
    return [text.get_text() for text in legend.get_texts()]


def chart(bots: dict[str, BotSeries], *, language: str = "en") -> ChartData:
    return ChartData(ZONE, END, DAYS, language, bots)


def test_no_data_draws_an_empty_chart() -> None:
    data = chart({})
    assert data.empty
    assert shared_texts("en").chart_empty in assert_legible(build_figure(data))
    assert png_size(render(data))[0] == WIDTH_INCHES * DPI


def test_one_bot_with_a_single_day_of_data() -> None:
    zeros = [0] * len(DAYS)
    only_today = BotSeries([*zeros[:-1], 3], [*zeros[:-1], 5], [*zeros[:-1], 12])
    data = chart({"Picture Bot": only_today})
    assert not data.empty
    figure = build_figure(data)
    texts = assert_legible(figure)
    assert legend_labels(figure) == ["Picture Bot"]
    assert texts.count("09.03") == 1 and "24.02" in texts and "10.03" not in texts
    for ax in figure.axes:
        [line] = ax.get_lines()
        values = numpy.asarray(line.get_ydata(), dtype=float)
        assert values[:-1].tolist() == [0.0] * 13 and values[-1] > 0
    assert png_size(render(data)) == (1200, round(figure.get_figheight() * DPI))


def test_twelve_bots_with_long_cyrillic_names_stay_legible() -> None:
    names = [f"Бот доставки фотографий маркетплейса Вайлдберриз № {n:02d}" for n in range(12)]
    assert all(len(name) <= 64 for name in names)  # BOT_NAME's limit: shown whole
    data = chart(synthetic_series(names, DAYS), language="ru")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph ... missing from font(s)" fails the test
        figure = build_figure(data)
        assert_legible(figure)
        png = render(data)
    assert sorted(" ".join(label.split()) for label in legend_labels(figure)) == sorted(names)
    width, height = png_size(png)
    assert width == 1200 and width + height <= 10000  # a photo, not a document, for Telegram
    used = font_manager.findfont(font_manager.FontProperties(family=["DejaVu Sans"]))
    assert Path(used).name == FONT.name and FONT.is_file()


@pytest.mark.parametrize(
    ("zone", "last_day"), [("Europe/Moscow", "10.03"), ("America/New_York", "09.03")]
)
async def test_days_are_counted_in_the_digest_time_zone(
    database_url: str, zone: str, last_day: str
) -> None:
    """20:59:59 and 21:00:00 UTC on 9 March are two days in Moscow (UTC+3), one in New York
    (UTC-4 since 8 March); the chart ends with the day before ``end``'s local day."""
    end = datetime(
        2026, 3, 11, 3, 0, tzinfo=UTC
    )  # 06:00 on 11 March in Moscow, 23:00 on 10.03 in NY
    before, after = (
        datetime(2026, 3, 9, 20, 59, 59, tzinfo=UTC),
        datetime(2026, 3, 9, 21, tzinfo=UTC),
    )
    db = Database(database_url, migrations=shared_migrations())
    await db.start()
    try:
        async with db.acquire() as conn:
            await conn.executemany(
                "INSERT INTO shared.users (telegram_id, first_name, first_seen)"
                " VALUES ($1, 'U', $2)",
                [(1, before), (2, after)],
            )
            await conn.executemany(
                "INSERT INTO shared.analytics_events (telegram_id, bot_name, event_type,"
                " event_data, created_at) VALUES ($1, 'Edge Bot', $2, $3::text::jsonb, $4)",
                [
                    (1, "user_start", None, before),
                    (2, "user_start", None, after),
                    (1, "photo_sent", '{"count": 4}', before),
                    (2, "command_used", None, after),
                ],
            )
            data = await query_chart_data(conn, end, zone)
    finally:
        await db.close()
    assert f"{data.days[-1]:%d.%m}" == last_day and len(data.days) == 14
    bot = data.bots["Edge Bot"]
    if zone == "Europe/Moscow":  # before: 23:59:59 on 9 March, after: 00:00 on 10 March
        assert (bot.new_users[-2:], bot.active_users[-2:], bot.main_events[-2:]) == (
            [1, 1],
            [1, 1],
            [4, 1],
        )
    else:  # both at 17:00 on 9 March, the last day drawn
        assert (bot.new_users[-1], bot.active_users[-1], bot.main_events[-1]) == (2, 2, 5)
    ticks = [t.get_text() for t in build_figure(data).axes[-1].get_xticklabels()]
    assert ticks[-1] == last_day


async def test_activity_rows_read_back_as_the_same_series(database_url: str) -> None:
    series = synthetic_series(["Picture Bot", "CRM Bot", "Текстовый бот"], DAYS, scale=0.2)
    db = Database(database_url, migrations=shared_migrations())
    await db.start()
    try:
        async with db.acquire() as conn:
            await insert_activity(conn, series, DAYS, ZONE)
            data = await query_chart_data(conn, END, ZONE)
    finally:
        await db.close()
    assert data.bots == series
    assert ChartData.from_json(data.to_json()) == data


# -- the digest with the chart --------------------------------------------------------------


@pytest.fixture
async def services(database_url: str) -> AsyncIterator[tuple[Database, Analytics]]:
    db = Database(database_url, migrations=shared_migrations())
    await db.start()
    analytics = Analytics(db, "Chart Bot", flush_seconds=0.1)
    await analytics.start()
    days = chart_days(datetime.now(UTC), ZONE)  # what a digest sent now draws
    async with db.acquire() as conn:
        await insert_activity(conn, synthetic_series(["Picture Bot"], days, scale=0.1), days, ZONE)
    yield db, analytics
    await analytics.close()
    await db.close()


def stats_of_today() -> DailyStats:
    now = datetime.now(UTC)
    return DailyStats(
        now - timedelta(hours=24), now, new_users=2, bots={"Picture Bot": BotStats(1)}
    )


@pytest.mark.parametrize(
    ("command", "timeout", "reason"),
    [
        ((sys.executable, "-c", "import sys; sys.exit('no fonts here')"), 30, "exited with 1"),
        ((sys.executable, "-c", "import time; time.sleep(60)"), 0.3, "no chart after 0.3 s"),
        ((sys.executable, "-c", "print('not an image')"), 30, "not a PNG"),
    ],
    ids=["crash", "timeout", "garbage"],
)
async def test_a_failed_chart_leaves_the_text_digest_alone(
    services: tuple[Database, Analytics],
    database_url: str,
    caplog: pytest.LogCaptureFixture,
    command: tuple[str, ...],
    timeout: float,
    reason: str,
) -> None:
    db, analytics = services
    stats = stats_of_today()
    charts = ChartService(
        db, analytics, timezone=ZONE, language="en", timeout=timeout, command=command
    )
    async with FakeBotAPI() as api:
        bot = bot_for(api)
        try:
            with caplog.at_level(logging.ERROR, "ecosystem_shared.digest_chart"):
                sent = await Notifier(bot, CHANNEL, "en", charts).daily_digest(stats)
        finally:
            await bot.session.close()
        assert sent
        assert api.calls("sendPhoto") == []
        [message] = api.calls("sendMessage", chat_id=CHANNEL)
        assert message.params["text"] == format_digest(stats, "en")[0]
    assert reason in caplog.text
    await analytics.flush()
    [error] = await fetch(
        database_url,
        "SELECT bot_name, event_data ->> 'error' AS error FROM shared.analytics_events"
        " WHERE event_type = 'error'",
    )
    assert error["bot_name"] == "Chart Bot" and reason in error["error"]


async def test_no_data_sends_text_only_without_drawing(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = Database(database_url, migrations=shared_migrations())
    await db.start()
    analytics = Analytics(db, "Chart Bot")
    # A command that would fail: it must not even run when there is nothing to draw.
    broken = (sys.executable, "-c", "raise SystemExit(9)")
    charts = ChartService(db, analytics, timezone=ZONE, language="en", timeout=5, command=broken)
    try:
        with caplog.at_level(logging.INFO, "ecosystem_shared.digest_chart"):
            assert await charts.render() is None
    finally:
        await analytics.close()
        await db.close()
    assert "no data" in caplog.text and "failed" not in caplog.text


async def test_chart_with_the_caption_or_before_the_text() -> None:
    png = render(chart(synthetic_series(["Picture Bot"], DAYS)))
    short = "📊 <b>Digest</b> &amp; numbers"
    exact = "<b>x</b>" + "y" * (CAPTION_LIMIT - 1)  # 1,024 characters once the tags are gone
    long = exact + "z"
    assert visible_length(short) == len("📊 Digest & numbers") + 1  # the emoji counts twice
    async with FakeBotAPI() as api:
        bot = bot_for(api)
        try:
            assert await send_report(bot, 42, [short], png)
            [photo] = api.calls("sendPhoto", chat_id=42)
            assert photo.params["caption"] == short and photo.params["parse_mode"] == "HTML"
            assert photo.file("photo").data == png and api.calls("sendMessage") == []

            api.clear_calls()
            assert await send_report(bot, 42, [exact], png)
            assert [call.method for call in api.calls()] == ["sendPhoto"]

            api.clear_calls()
            assert await send_report(bot, 42, [long], png)
            assert [call.method for call in api.calls()] == ["sendPhoto", "sendMessage"]
            assert "caption" not in api.calls("sendPhoto")[0].params

            api.clear_calls()
            refused = "Bad Request: IMAGE_PROCESS_FAILED"
            api.fail_next("sendPhoto", error_code=400, description=refused)
            assert await send_report(bot, 42, [short], png)
            assert [(c.method, c.error_code) for c in api.calls()] == [
                ("sendPhoto", 400),
                ("sendMessage", None),
            ]
        finally:
            await bot.session.close()


@pytest.mark.slow  # starts bot processes
def test_the_bot_process_never_imports_matplotlib(bot_module: str) -> None:
    """Everything a bot imports, then a chart drawn through the subprocess: a PNG of 12 bots,
    and no matplotlib (nor numpy) in the process that asked for it."""
    names = [f"Бот № {number}" for number in range(12)]
    data = chart(synthetic_series(names, DAYS), language="ru")
    script = f"""
import asyncio, importlib, pkgutil, sys
import ecosystem_shared, {bot_module}
for package in (ecosystem_shared, {bot_module}):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if module.name != "ecosystem_shared.chart" and ".testing" not in module.name:
            importlib.import_module(module.name)
importlib.import_module("{bot_module}.__main__")
from ecosystem_shared.digest_chart import run_chart_process
from ecosystem_shared.stats import ChartData
data = ChartData.from_json({data.to_json()!r})
png = asyncio.run(run_chart_process(data, timeout={CHART_TIMEOUT}))
sys.stdout.buffer.write(png)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("matplotlib", "numpy")), file=sys.stderr)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    assert result.stderr.decode().splitlines()[-1] == "[]"
    width, height = png_size(result.stdout)
    assert width == 1200 and height > 1000


def test_chart_days_end_the_day_before_the_local_day() -> None:
    assert chart_days(datetime(2026, 3, 9, 21, tzinfo=UTC), ZONE)[-1] == date(2026, 3, 9)
    assert chart_days(datetime(2026, 3, 9, 20, 59, tzinfo=UTC), ZONE)[-1] == date(2026, 3, 8)
    assert len(set(chart_days(END, ZONE))) == 14


def test_chart_data_survives_the_pipe() -> None:
    data = chart(synthetic_series(["Ёжик"], DAYS))
    assert ChartData.from_json(data.to_json()) == data
    broken = data.to_json().replace('"main_events": [', '"main_events": [1, ', 1)
    with pytest.raises(ValueError, match="one value per day"):
        ChartData.from_json(broken)


def test_the_chart_process_gets_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", "123:secret")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:secret@h/db")
    probe = (
        "import os, sys\n"
        "leaked = sorted({'BOT_TOKEN', 'DATABASE_URL'} & set(os.environ))\n"
        "sys.exit('leaked ' + str(leaked)) if leaked else sys.stdout.buffer.write("
        + repr(PNG)
        + ")"
    )
    command = (sys.executable, "-c", probe)
    leaky = subprocess.run(command, capture_output=True, timeout=60, check=False)
    assert leaky.returncode == 1 and b"BOT_TOKEN" in leaky.stderr  # the probe sees them
    assert asyncio.run(run_chart_process(chart({}), timeout=30, command=command)) == PNG
