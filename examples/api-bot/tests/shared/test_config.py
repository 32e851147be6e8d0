import subprocess
import sys
from datetime import time
from pathlib import Path

import pytest

from ecosystem_shared.config import SharedSettings, load_settings

TOKEN = "123456:TEST-token-abcdefghijklmnopqrstuvwxyz"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(SharedSettings.model_fields):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env file


def test_defaults_and_secrets_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", TOKEN)
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:s3cr3t-pass@db:5432/x")
    settings = load_settings(SharedSettings)
    assert settings.DIGEST_TIME == time(0, 0)
    assert settings.DIGEST_TIMEZONE == "Europe/Moscow"
    assert settings.database_dsn == "postgresql://u:s3cr3t-pass@db:5432/x"
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert TOKEN not in shown
    assert "s3cr3t-pass" not in shown


def test_empty_optional_values_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", "")
    monkeypatch.setenv("ANALYTICS_CHANNEL_ID", "")
    monkeypatch.setenv("DATABASE_URL", " ")
    settings = load_settings(SharedSettings)
    assert settings.TELEGRAM_API_BASE_URL is None
    assert settings.ANALYTICS_CHANNEL_ID is None
    assert settings.database_dsn is None
    assert not settings.analytics_enabled


def test_parses_lists_times_and_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", TOKEN)
    monkeypatch.setenv("ADMIN_USER_IDS", "1, 22,333")
    monkeypatch.setenv("DIGEST_TIME", "09:30")
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", "http://telegram-bot-api:8081/")
    settings = load_settings(SharedSettings)
    assert settings.ADMIN_USER_IDS == frozenset({1, 22, 333})
    assert settings.DIGEST_TIME == time(9, 30)
    assert settings.TELEGRAM_API_BASE_URL == "http://telegram-bot-api:8081"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("BOT_TOKEN", "not-a-token", "BOT_TOKEN: expected the token from @BotFather"),
        ("DIGEST_TIME", "25:00", "DIGEST_TIME: expected HH:MM"),
        ("DIGEST_TIME", "9:5", "DIGEST_TIME: expected HH:MM"),
        ("DIGEST_TIMEZONE", "Mars/Olympus", "DIGEST_TIMEZONE: expected an IANA time zone"),
        ("RATE_LIMIT_SECONDS", "fast", "RATE_LIMIT_SECONDS: Input should be a valid number"),
        ("RATE_LIMIT_SECONDS", "-1", "RATE_LIMIT_SECONDS: Input should be greater than or equal"),
        ("ANALYTICS_CHANNEL_ID", "@channel", "ANALYTICS_CHANNEL_ID: Input should be a valid int"),
        ("ENABLE_ANALYTICS", "maybe", "ENABLE_ANALYTICS: Input should be a valid boolean"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL: Input should be"),
        ("DATABASE_URL", "mysql://x", "DATABASE_URL: expected postgresql://"),
        ("TELEGRAM_API_BASE_URL", "telegram-bot-api:8081", "TELEGRAM_API_BASE_URL: expected"),
        ("ADMIN_USER_IDS", "1,alice", "ADMIN_USER_IDS: expected comma-separated"),
        ("LANGUAGE", "de", "LANGUAGE: Input should be 'ru' or 'en'"),
    ],
)
def test_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    value: str,
    expected: str,
) -> None:
    if name != "BOT_TOKEN":
        monkeypatch.setenv("BOT_TOKEN", TOKEN)
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        load_settings(SharedSettings)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"Configuration error: {expected}"), lines[0]
    if name == "BOT_TOKEN" or name == "DATABASE_URL":
        assert value not in lines[0]


def test_missing_token(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_settings(SharedSettings)
    assert (
        capsys.readouterr().err.strip() == "Configuration error: BOT_TOKEN: is required but not set"
    )


def test_bad_env_stops_the_real_entrypoint(tmp_path: Path) -> None:
    """The process exits 2 with one readable line, no traceback."""
    code = "from ecosystem_shared.config import *; load_settings(SharedSettings)"
    env = {"PATH": "/usr/bin:/bin", "BOT_TOKEN": TOKEN, "DIGEST_TIME": "7pm"}
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "PYTHONPATH": str(root)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "Configuration error: DIGEST_TIME: expected HH:MM in 24-hour form, e.g. 00:00 or 09:30"
    )
