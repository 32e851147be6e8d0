"""``python -m ecosystem_shared.broadcast`` on a real database: jobs made, listed, shown, paused,
resumed and cancelled; bad input answered in one clear line with nothing written."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest

from ecosystem_shared.bot_registry import register_bot
from ecosystem_shared.broadcast import main
from ecosystem_shared.broadcast_message import (
    BroadcastInputError,
    BroadcastMessage,
    visible_length,
)

BOT = "Cli bot"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def seed(url: str, rows: list[tuple[str, int, str | None, int, bool]]) -> None:
    """(bot, user, language, days since last seen, blocked)."""

    async def insert() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.executemany(
                "INSERT INTO shared.bot_audience"
                " (bot_name, telegram_id, first_seen, last_seen, language_code, blocked_at)"
                " VALUES ($1, $2, now() - make_interval(days => $4),"
                " now() - make_interval(days => $4), $3, CASE WHEN $5 THEN now() END)",
                rows,
            )
        finally:
            await conn.close()

    asyncio.run(insert())


def jobs(url: str) -> int:
    return int(recorded(url, "SELECT count(*) FROM shared.broadcasts")[0][0])


def run(url: str, *args: str) -> int:
    return main(["--database-url", url, "--bot-name", BOT, *args])


@pytest.fixture
def audience(database_url: str) -> str:
    seed(
        database_url,
        [
            (BOT, 1, "ru", 1, False),
            (BOT, 2, "en", 1, False),
            (BOT, 3, "ru", 40, False),
            (BOT, 4, "ru", 1, True),  # blocked: never in an audience
            ("Other bot", 1, "ru", 1, False),
            ("Other bot", 3, "ru", 1, True),
            ("Old bot", 2, "en", 1, False),  # not started since shared.bots: known by name only
        ],
    )
    register(database_url, {"cli-bot": BOT, "other-bot": "Other bot"})
    return database_url


def register(url: str, bots: dict[str, str]) -> None:
    """What each bot does at start: its slug -> BOT_NAME in shared.bots."""

    async def upsert() -> None:
        conn = await asyncpg.connect(url)
        try:
            for slug, name in bots.items():
                await register_bot(conn, slug, name)
        finally:
            await conn.close()

    asyncio.run(upsert())


@pytest.mark.parametrize(
    ("options", "size"),
    [
        ((), 3),
        (("--language", "ru"), 2),
        (("--seen-days", "7"), 2),
        (("--also-uses", "other-bot"), 1),  # the other bot's slug: the documented way
        (("--also-uses", "Other-Bot"), 1),
        (("--also-uses", "other BOT"), 1),  # its BOT_NAME, case-insensitive: as before
        (("--also-uses", "old bot"), 1),  # not registered yet: matched by BOT_NAME
        (("--language", "ru", "--seen-days", "7", "--also-uses", "other-bot"), 1),
        (("--language", "ru", "--also-uses", "old bot"), 0),
    ],
)
def test_dry_run_prints_the_audience_size_and_creates_nothing(
    audience: str, options: tuple[str, ...], size: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(audience, "create", "--text", "Hi", "--dry-run", *options) == 0
    assert capsys.readouterr().out == f"Audience: {size} users\n"
    assert jobs(audience) == 0


def test_create_show_pause_resume_cancel(audience: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run(audience, "create", "--text", "<b>Hi</b>", "--button", "Open=https://e.org", "--yes")
        == 0
    )
    job_id = int(capsys.readouterr().out.split()[0])
    assert run(audience, "show", str(job_id), "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert {k: shown[k] for k in ("id", "state", "total", "pending", "sent", "unknown")} == {
        "id": job_id,
        "state": "running",
        "total": 3,
        "pending": 3,
        "sent": 0,
        "unknown": 0,
    }
    assert run(audience, "pause", str(job_id)) == 0
    assert capsys.readouterr().out == f"Broadcast {job_id}: paused\n"
    assert run(audience, "resume", str(job_id)) == 0
    assert run(audience, "cancel", str(job_id)) == 0
    capsys.readouterr()
    assert run(audience, "resume", str(job_id)) == 1
    assert capsys.readouterr().err == f"Error: Cannot resume broadcast {job_id}: it is cancelled\n"
    assert run(audience, "list") == 0
    assert f"#{job_id} cancelled: 0/3 sent" in capsys.readouterr().out


def test_create_with_also_uses_slug_targets_the_other_bots_users(
    audience: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(audience, "create", "--text", "Hi", "--also-uses", "other-bot", "--yes") == 0
    job_id = int(capsys.readouterr().out.split()[0])
    query = "SELECT telegram_id FROM shared.broadcast_recipients WHERE broadcast_id = $1"
    recipients = recorded(audience, query, job_id)
    assert [row["telegram_id"] for row in recipients] == [1]  # user 3 blocked the other bot
    stored = recorded(audience, "SELECT audience FROM shared.broadcasts WHERE id = $1", job_id)
    assert json.loads(stored[0]["audience"]) == {"also_uses": "Other bot"}  # resolved name
    assert run(audience, "create", "--text", "Hi", "--also-uses", "OLD BOT", "--yes") == 0
    job_id = int(capsys.readouterr().out.split()[0])
    assert run(audience, "show", str(job_id), "--json") == 0
    assert json.loads(capsys.readouterr().out)["total"] == 1  # user 2, by the name fallback


def test_unknown_also_uses_before_any_bot_registered_says_so(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(database_url, [(BOT, 1, "ru", 1, False)])
    assert run(database_url, "create", "--text", "x", "--dry-run", "--also-uses", "shop") == 1
    err = capsys.readouterr().err
    assert "Known slugs: none yet." in err
    assert "matched by its BOT_NAME: Cli bot" in err


def recorded(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    async def read() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url)
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(read())


def test_without_yes_and_no_terminal_nothing_is_created(
    audience: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(audience, "create", "--text", "Hi") == 1
    assert "add --yes" in capsys.readouterr().err
    assert jobs(audience) == 0


def long_text(n: int) -> str:
    return "<b>" + "я" * n + "</b>"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("--text", "  "), "The message is empty"),
        (("--text", "<b></b>"), "The message is empty once the HTML tags are removed"),
        (("--text", long_text(4097)), "The text is 4097 characters after HTML parsing"),
        (("--text", "<div>x</div>"), "HTML: Telegram does not support the tag <div>"),
        (("--text", "<b>x</i>"), "HTML: </i> does not close the last opened tag"),
        (("--text", "<b>x"), "HTML: <b> is never closed"),
        (("--text", "a < b"), "HTML: write < and > as &lt; and &gt;"),
        (("--text", "&nbsp;"), "HTML: unsupported entity &nbsp;"),
        (("--text", "x", "--language", "de"), "The audience is empty"),
        (
            ("--text", "x", "--also-uses", "nobody"),
            "--also-uses: no bot with the slug or BOT_NAME 'nobody'. Known slugs: cli-bot,"
            " other-bot. A bot not started since the upgrade that added shared.bots has no slug"
            " on record and is matched by its BOT_NAME: Cli bot, Old bot, Other bot\n",
        ),
        (("--text", "x", "--button", "=https://e.org"), "The button needs a text"),
        (("--text", "x", "--button", "Go=ftp://e.org"), "The button needs an http(s)://"),
    ],
)
def test_bad_input_is_refused_in_one_line(
    audience: str, args: tuple[str, ...], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(audience, "create", "--yes", *args) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"Error: {error}"), err
    assert err.count("\n") == 1
    assert jobs(audience) == 0


def test_photo_checks(audience: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    assert run(audience, "create", "--yes", "--text", "x", "--photo", str(text_file)) == 1
    assert "The photo is not an image" in capsys.readouterr().err
    assert run(audience, "create", "--yes", "--text", "x", "--photo", str(tmp_path / "no")) == 1
    assert "--photo: cannot read" in capsys.readouterr().err
    photo = tmp_path / "a.png"
    photo.write_bytes(PNG)
    caption = long_text(1025)
    assert run(audience, "create", "--yes", "--text", caption, "--photo", str(photo)) == 1
    assert "The caption is 1025 characters" in capsys.readouterr().err
    assert run(audience, "create", "--yes", "--text", "", "--photo", str(photo)) == 0
    assert jobs(audience) == 1


def test_unknown_job_and_no_database(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("show", "pause", "resume", "cancel"):
        assert run(database_url, command, "999") == 1
        assert capsys.readouterr().err == "Error: No broadcast with id 999\n"
    with pytest.raises(SystemExit) as exit_info:
        main(["--database-url", "", "--bot-name", BOT, "list"])
    assert exit_info.value.code == 2
    assert "no database" in capsys.readouterr().err


def test_lengths_are_counted_after_parsing_in_utf16_units() -> None:
    assert visible_length('<a href="https://e.org">ab</a> &lt;&amp;') == 5
    assert visible_length("😀") == 2  # one astral character is two UTF-16 units
    BroadcastMessage("<b>" + "a" * 4096 + "</b>").check()  # tags do not count
    with pytest.raises(BroadcastInputError, match="4097"):
        BroadcastMessage("😀" * 2048 + "a").check()
