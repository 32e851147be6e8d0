"""The bot token and the database password never reach the output or the database.

The bot runs as a real process with ``LOG_LEVEL=DEBUG`` and fails on purpose: Bot API errors
whose text echoes the secrets (as a misbehaving proxy might), a handler error, a database that
refuses the login, a token that Telegram rejects. Everything it prints is checked, and so is
the ``error`` event it stores. Also: ``.env`` is ignored by git.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio

from ecosystem_shared.testing.bot_process import BotProcess
from ecosystem_shared.testing.fake_bot_api import Call, FakeBotAPI
from ecosystem_shared.testing.waiting import fetch, wait_for_rows, wait_until

REDACTED = "***"


def make_token() -> str:
    """A token shaped like @BotFather's, unique to the test run."""
    return f"987654321:AAH{secrets.token_urlsafe(30)}"


def with_credentials(url: str, user: str, password: str, database: str) -> str:
    """``url``'s server, logged in as ``user:password`` to ``database``."""
    parts = urlsplit(url)
    server = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{server}", path=f"/{database}"))


async def admin(url: str, *statements: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        for statement in statements:  # one by one: CREATE DATABASE refuses a transaction
            await conn.execute(statement)
    finally:
        await conn.close()


@dataclass
class PasswordDatabase:
    url: str  # postgresql://role:password@host/database
    password: str


@pytest_asyncio.fixture
async def password_database(postgres_url: str) -> AsyncIterator[PasswordDatabase]:
    """A database owned by a role that logs in with a password (both dropped afterwards)."""
    name = f"secret_{uuid.uuid4().hex[:12]}"
    password = f"pw-{secrets.token_hex(16)}"
    await admin(
        postgres_url,
        f"CREATE ROLE {name} LOGIN PASSWORD '{password}'",
        f"CREATE DATABASE {name} OWNER {name}",
    )
    try:
        yield PasswordDatabase(with_credentials(postgres_url, name, password, name), password)
    finally:
        await admin(
            postgres_url,
            f"DROP DATABASE IF EXISTS {name} WITH (FORCE)",
            f"DROP ROLE IF EXISTS {name}",
        )


def assert_hidden(text: str, *hidden: str) -> None:
    for secret in hidden:
        assert secret not in text, f"a secret ({secret[:4]}...) leaked:\n{text[-3000:]}"


@pytest.mark.slow
async def test_secrets_hidden_in_logs_and_error_events(
    password_database: PasswordDatabase, bot_module: str, request: pytest.FixtureRequest
) -> None:
    token = make_token()
    secret_part = token.partition(":")[2]
    dsn, password = password_database.url, password_database.password
    echo = f"(while calling /bot{token}/sendMessage with {dsn})"
    async with FakeBotAPI(token) as api:
        bot = BotProcess(
            bot_module,
            request.config.rootpath,
            api,
            {
                "DATABASE_URL": dsn,
                "LOG_LEVEL": "DEBUG",
                "RATE_LIMIT_SECONDS": "0",
                "ANALYTICS_FLUSH_SECONDS": "0.1",
            },
            start_timeout=120,
        )
        await bot.start()
        try:
            # The next poll fails, and so does the reply to /help: the handler raises, the error
            # middleware logs it and records an `error` event. Both texts carry the secrets.
            api.fail_next("getUpdates", error_code=500, description=f"Internal Server Error {echo}")
            api.fail_next("sendMessage", error_code=400, description=f"Bad Request: no chat {echo}")
            api.push_message("/help", user_id=901)
            await api.wait_for_calls("sendMessage", 2, timeout=30, chat_id=901)  # + the apology

            async def failed_polls() -> list[Call]:
                return [call for call in api.calls("getUpdates") if call.error_code == 500]

            await wait_until(failed_polls, timeout=30, what="the failed getUpdates")
            rows = await wait_for_rows(
                dsn,
                "SELECT event_data::text AS data FROM shared.analytics_events"
                " WHERE event_type = 'error'",
                timeout=30,
            )
        finally:
            code = await bot.stop()
    assert code == 0
    output = bot.output
    assert_hidden(output, secret_part, password)
    assert "TelegramBadRequest" in output and "TelegramServerError" in output  # were logged,
    assert REDACTED in output  # with the secrets replaced
    assert " DEBUG " in output
    assert_hidden(rows[0]["data"], secret_part, password)
    assert "TelegramBadRequest" in rows[0]["data"] and REDACTED in rows[0]["data"]
    # Nothing else in the database holds them either (events are the only free text).
    everything = await fetch(dsn, "SELECT event_data::text AS data FROM shared.analytics_events")
    assert_hidden(" ".join(str(row["data"]) for row in everything), secret_part, password)


@pytest.mark.slow
async def test_fatal_start_failure_hides_secrets(
    postgres_url: str, bot_module: str, request: pytest.FixtureRequest
) -> None:
    """A revoked token (getMe answered 401) and a database login that is refused: the process
    exits with an error status and prints neither secret, not even in the final traceback."""
    token = make_token()
    password = f"pw-{secrets.token_hex(16)}"
    dsn = with_credentials(postgres_url, f"nobody_{uuid.uuid4().hex[:8]}", password, "postgres")
    async with FakeBotAPI(token) as api:
        api.fail_next("getMe", error_code=401, description=f"Unauthorized: token {token} revoked")
        bot = BotProcess(
            bot_module,
            request.config.rootpath,
            api,
            {"DATABASE_URL": dsn, "LOG_LEVEL": "DEBUG"},
        )
        await bot.start(wait_polling=False)
        try:
            await api.wait_for_call("getMe", timeout=120)
            code = await wait_exit(bot, 60)
        finally:
            if bot.returncode is None:
                await bot.stop()
    output = bot.output
    assert code not in (0, None), output
    assert "Unauthorized" in output, output
    assert "nobody_" in output  # the refused login was reported (without its password)
    assert_hidden(output, token.partition(":")[2], password)


async def wait_exit(bot: BotProcess, timeout: float) -> int:
    """The exit status of a process expected to stop by itself."""
    deadline = asyncio.get_running_loop().time() + timeout
    while bot.returncode is None:
        assert asyncio.get_running_loop().time() < deadline, f"still running:\n{bot.output}"
        await asyncio.sleep(0.2)
    return await bot.stop()  # collects the rest of the output


def ignored_by_git(root: Path, names: list[str]) -> set[str] | None:
    """``git check-ignore --no-index`` of ``names`` in a new repository ``root`` (None: no git)."""
    git = shutil.which("git")
    if git is None:
        return None
    subprocess.run([git, "init", "-q", str(root)], check=True, timeout=60)
    result = subprocess.run(
        [git, "check-ignore", "--no-index", *names],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode in (0, 1), result  # 1: nothing ignored
    return set(result.stdout.split())


def ignored_by_dulwich(root: Path, names: list[str]) -> set[str]:
    """The same by dulwich, a Python git in the dev extra, which reads .gitignore by git's
    rules: the check runs where git is not installed too (the tests need nothing but Python)."""
    from dulwich import porcelain

    return set(porcelain.check_ignore(porcelain.init(str(root)), names, no_index=True))


def test_env_file_is_ignored_by_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = Path(__file__).resolve().parents[2]
    names = [".env", ".env.local", ".env.production.local", ".env.example", "config/.env"]
    expected = {".env", ".env.local", ".env.production.local", "config/.env"}
    for checker in ("git", "dulwich"):
        repo = tmp_path / checker
        repo.mkdir()
        shutil.copy(root / ".gitignore", repo / ".gitignore")
        for name in names:
            (repo / name).parent.mkdir(exist_ok=True)
            (repo / name).write_text("BOT_TOKEN=1:x\n")
    assert ignored_by_git(tmp_path / "git", names) in (expected, None)  # None: git not installed
    monkeypatch.chdir(tmp_path / "dulwich")  # dulwich takes the names relative to the cwd
    assert ignored_by_dulwich(tmp_path / "dulwich", names) == expected
