"""Settings given as ``NAME_FILE`` (Docker secrets): read, refused with one clear line, never
echoed; the database password from a file reaches a real PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from ecosystem_shared.config import SharedSettings, load_settings
from ecosystem_shared.secret_files import FILE_SUFFIX, SecretFileError, read_secret_file
from ecosystem_shared.testing.postgres import admin

from tests.shared.test_config import run_entrypoint

TOKEN = "123456:TEST-token-abcdefghijklmnopqrstuvwxyz"
NOBODY = 65534


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in SharedSettings.model_fields:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name + FILE_SUFFIX, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env file


def secret(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / "secrets" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def config_error(capsys: pytest.CaptureFixture[str]) -> str:
    """Loads SharedSettings expecting exit 2; the one line printed."""
    with pytest.raises(SystemExit) as exit_info:
        load_settings(SharedSettings)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_token_and_webhook_secret_from_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # `echo "$TOKEN" | docker secret create ...` leaves a line break: not part of the value.
    monkeypatch.setenv("BOT_TOKEN_FILE", str(secret(tmp_path, "bot_token", TOKEN + "\n")))
    webhook_secret = "w" * 48
    path = secret(tmp_path, "webhook_secret", webhook_secret + "\r\n")
    monkeypatch.setenv("WEBHOOK_SECRET_FILE", str(path))
    monkeypatch.setenv("BOT_TOKEN", "")  # an empty line of .env.example is no conflict
    settings = load_settings(SharedSettings)
    assert settings.BOT_TOKEN.get_secret_value() == TOKEN
    assert settings.webhook_secret == webhook_secret
    shown = repr(settings) + settings.model_dump_json()
    assert TOKEN not in shown and webhook_secret not in shown
    assert {TOKEN, webhook_secret} <= set(settings.log_secrets())


def test_file_variables_in_dotenv_and_precedence(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token_file = secret(tmp_path, "bot_token", TOKEN)
    other = "987654:other-token-abcdefghijklmnop"
    Path(".env").write_text(f"BOT_TOKEN_FILE={token_file}\nBOT_NAME=From dotenv\n")
    assert load_settings(SharedSettings).BOT_TOKEN.get_secret_value() == TOKEN
    # The environment wins over .env, whether it gives the value or the file.
    monkeypatch.setenv("BOT_TOKEN", other)
    assert load_settings(SharedSettings).BOT_TOKEN.get_secret_value() == other
    monkeypatch.delenv("BOT_TOKEN")
    Path(".env").write_text(f"BOT_TOKEN={other}\n")
    monkeypatch.setenv("BOT_TOKEN_FILE", str(token_file))
    assert load_settings(SharedSettings).BOT_TOKEN.get_secret_value() == TOKEN


def test_file_values_are_validated_like_direct_ones(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BOT_TOKEN_FILE", str(secret(tmp_path, "bot_token", "not a token")))
    line = config_error(capsys)
    assert line.startswith("Configuration error: BOT_TOKEN: expected the token from @BotFather")
    assert "not a token" not in line


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d / "absent", "does not exist (a Docker secret is mounted only in the"),
        (lambda d: d, "is a directory, not a file"),
        (lambda d: secret(d, "empty", "\n"), "is empty"),
        (lambda d: secret(d, "latin1", b"caf\xe9:token"), "is not UTF-8 text"),
        (lambda d: secret(d, "huge", b"1" * (600 * 1024)), "is larger than"),
    ],
    ids=["missing", "directory", "empty", "not-utf8", "huge"],
)
def test_bad_file_is_one_line_naming_variable_and_path(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: object,
    expected: str,
) -> None:
    assert callable(make)
    path = make(tmp_path)
    monkeypatch.setenv("BOT_TOKEN_FILE", str(path))
    line = config_error(capsys)
    assert line.startswith(f"Configuration error: BOT_TOKEN_FILE: {path} "), line
    assert expected in line


@contextlib.contextmanager
def as_user(uid: int) -> Iterator[None]:
    """Root reads every file: drop the effective uid for a moment (restored after)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)


def test_unreadable_file_names_the_reader(tmp_path: Path) -> None:
    path = secret(tmp_path, "bot_token", TOKEN)
    path.chmod(0o000)
    tmp_path.chmod(0o755)
    path.parent.chmod(0o755)
    with as_user(NOBODY), pytest.raises(SecretFileError) as error:
        read_secret_file("BOT_TOKEN_FILE", str(path))
    uid = NOBODY if os.geteuid() == 0 else os.geteuid()
    assert str(error.value) == (
        f"BOT_TOKEN_FILE: {path} is not readable by this process (uid {uid})"
    )


@pytest.mark.parametrize("where", ["environment", ".env"])
def test_value_and_file_in_one_place_is_refused(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    where: str,
) -> None:
    path = secret(tmp_path, "bot_token", TOKEN)
    if where == "environment":
        monkeypatch.setenv("BOT_TOKEN", TOKEN)
        monkeypatch.setenv("BOT_TOKEN_FILE", str(path))
    else:
        Path(".env").write_text(f"BOT_TOKEN={TOKEN}\nBOT_TOKEN_FILE={path}\n")
    line = config_error(capsys)
    place = "in the environment" if where == "environment" else "in .env"
    assert line == (
        f"Configuration error: BOT_TOKEN_FILE: BOT_TOKEN is set {place} as well;"
        " set only one of them"
    )
    assert TOKEN not in line


def test_database_password_beside_a_url_with_one_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BOT_TOKEN", TOKEN)
    monkeypatch.setenv("DATABASE_URL", "postgresql://eco:inline-pass@postgres:5432/eco")
    monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(secret(tmp_path, "pg", "file-pass")))
    line = config_error(capsys)
    assert line == (
        "Configuration error: DATABASE_PASSWORD: DATABASE_URL has a password already;"
        " give it in one place only"
    )
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres:5432/eco")
    assert "DATABASE_URL needs a user" in config_error(capsys)


@contextlib.asynccontextmanager
async def password_required(url: str, role: str) -> AsyncIterator[None]:
    """The test server trusts every login: make it ask ``role`` for its password (a first
    pg_hba.conf line for that role alone), and put the file back afterwards."""
    connection = await asyncpg.connect(url)
    try:
        hba = await connection.fetchval("SHOW hba_file")
        original = await connection.fetchval("SELECT pg_read_file($1)", hba)

        async def write(text: str) -> None:
            # COPY writes one row per line, escaping tabs: spaces separate hba fields too.
            lines = text.replace("\t", " ").replace("\\", "").splitlines()
            values = ",".join(f"({i}, $${line}$$)" for i, line in enumerate(lines))
            # The server's own pg_hba.conf lines and path: no outside input (B608).
            copy = f"COPY (SELECT l FROM (VALUES {values}) AS t(i, l) ORDER BY i) TO '{hba}'"  # nosec B608
            await connection.execute(copy)
            await connection.fetchval("SELECT pg_reload_conf()")

        await write(f"host all {role} all scram-sha-256\n{original}")
        try:
            yield
        finally:
            await write(original)
    finally:
        await connection.close()


async def test_database_password_file_reaches_postgresql(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, empty_database_url: str
) -> None:
    """A password that must be percent-encoded in a URL (Docker secrets need not be URL-safe)
    logs in to a real server that checks it, and is redacted from the log like one inside
    the URL."""
    role = f"secret_{uuid.uuid4().hex[:8]}"
    password = "p@ss:w/rd%?#é " + uuid.uuid4().hex
    await admin(empty_database_url, f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    parts = urlsplit(empty_database_url)
    host = parts.netloc.rpartition("@")[2]
    role_url = urlunsplit(parts._replace(netloc=f"{role}@{host}"))
    monkeypatch.setenv("BOT_TOKEN", TOKEN)
    monkeypatch.setenv("DATABASE_URL", role_url)
    try:
        async with password_required(empty_database_url, role):
            monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(secret(tmp_path, "pg", "wrong")))
            wrong = load_settings(SharedSettings).database_dsn
            with pytest.raises(asyncpg.InvalidPasswordError):
                await asyncpg.connect(wrong)
            monkeypatch.setenv("DATABASE_PASSWORD_FILE", str(secret(tmp_path, "pg", password)))
            settings = load_settings(SharedSettings)
            assert settings.database_dsn is not None
            connection = await asyncpg.connect(settings.database_dsn)
            try:
                assert await connection.fetchval("SELECT current_user") == role
            finally:
                await connection.close()
        assert password in settings.log_secrets()
        assert password not in repr(settings)
    finally:
        await admin(empty_database_url, f"DROP ROLE {role}")


@pytest.mark.slow  # starts the bot's process
def test_missing_secret_stops_the_real_entrypoint(bot_module: str, tmp_path: Path) -> None:
    """As in a Swarm service whose secret is not mounted: exit 2, one line, no traceback."""
    result = run_entrypoint(bot_module, tmp_path, {"BOT_TOKEN_FILE": "/run/secrets/bot_token"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "Configuration error: BOT_TOKEN_FILE: /run/secrets/bot_token does not exist (a Docker"
        " secret is mounted only in the services that list it under `secrets:`)"
    )
