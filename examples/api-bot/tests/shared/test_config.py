import importlib
import subprocess
import sys
from datetime import time
from pathlib import Path

import pytest

from ecosystem_shared.config import SharedSettings, load_settings
from ecosystem_shared.health import DEFAULT_HEALTH_FILE
from ecosystem_shared.health import main as health_check
from ecosystem_shared.testing.bot_process import clean_environment

TOKEN = "123456:TEST-token-abcdefghijklmnopqrstuvwxyz"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(SharedSettings.model_fields):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)
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


def test_parses_times_and_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_TOKEN", TOKEN)
    monkeypatch.setenv("DIGEST_TIME", "09:30")
    monkeypatch.setenv("TELEGRAM_API_BASE_URL", "http://telegram-bot-api:8081/")
    settings = load_settings(SharedSettings)
    assert settings.DIGEST_TIME == time(9, 30)
    assert settings.TELEGRAM_API_BASE_URL == "http://telegram-bot-api:8081"


# (variable, bad value, start of its one error line): every SharedSettings variable that a value
# can make invalid, the first case of each also goes to the real entrypoint at once.
BAD_VALUES = [
    (
        "ANALYTICS_MAIN_EVENTS",
        "photo sent",
        "ANALYTICS_MAIN_EVENTS: expected comma-separated event types",
    ),
    (
        "ANALYTICS_RETENTION_MONTHS",
        "0",
        "ANALYTICS_RETENTION_MONTHS: Input should be greater than or equal to 1",
    ),
    (
        "ANALYTICS_RETENTION_MONTHS",
        "a year",
        "ANALYTICS_RETENTION_MONTHS: Input should be a valid integer",
    ),
    ("BOT_TOKEN", "not-a-token", "BOT_TOKEN: expected the token from @BotFather"),
    ("BOT_TOKEN", "123456:abc def", "BOT_TOKEN: expected the token from @BotFather"),
    ("BOT_NAME", "", "BOT_NAME: String should have at least 1 character"),
    ("BOT_NAME", "x" * 65, "BOT_NAME: String should have at most 64 characters"),
    ("LANGUAGE", "de", "LANGUAGE: Input should be 'ru' or 'en'"),
    ("LOG_LEVEL", "LOUD", "LOG_LEVEL: Input should be 'DEBUG', 'INFO'"),
    ("DATABASE_URL", "mysql://x", "DATABASE_URL: expected postgresql://"),
    ("DB_POOL_MIN_SIZE", "many", "DB_POOL_MIN_SIZE: Input should be a valid integer"),
    ("DB_POOL_MIN_SIZE", "-1", "DB_POOL_MIN_SIZE: Input should be greater than or equal to 0"),
    ("DB_POOL_MAX_SIZE", "0", "DB_POOL_MAX_SIZE: Input should be greater than or equal to 1"),
    ("DB_RECONNECT_SECONDS", "0", "DB_RECONNECT_SECONDS: Input should be greater than 0"),
    ("ENABLE_ANALYTICS", "maybe", "ENABLE_ANALYTICS: Input should be a valid boolean"),
    ("ANALYTICS_CHANNEL_ID", "@channel", "ANALYTICS_CHANNEL_ID: Input should be a valid int"),
    ("ANALYTICS_BUFFER_SIZE", "5", "ANALYTICS_BUFFER_SIZE: Input should be greater than or equal"),
    ("ANALYTICS_BATCH_SIZE", "0", "ANALYTICS_BATCH_SIZE: Input should be greater than or equal"),
    ("ANALYTICS_FLUSH_SECONDS", "soon", "ANALYTICS_FLUSH_SECONDS: Input should be a valid number"),
    ("RATE_LIMIT_SECONDS", "-1", "RATE_LIMIT_SECONDS: Input should be greater than or equal"),
    ("RATE_LIMIT_SECONDS", "fast", "RATE_LIMIT_SECONDS: Input should be a valid number"),
    ("RATE_LIMIT_SECONDS", "nan", "RATE_LIMIT_SECONDS: Input should be less than or equal"),
    ("MAX_CONCURRENT_UPDATES", "0", "MAX_CONCURRENT_UPDATES: Input should be greater than or"),
    ("TELEGRAM_API_BASE_URL", "telegram-bot-api:8081", "TELEGRAM_API_BASE_URL: expected"),
    ("TELEGRAM_API_LOCAL", "maybe", "TELEGRAM_API_LOCAL: Input should be a valid boolean"),
    ("DIGEST_TIME", "7pm", "DIGEST_TIME: expected HH:MM"),
    ("DIGEST_TIME", "25:00", "DIGEST_TIME: expected HH:MM"),
    ("DIGEST_TIME", "9:5", "DIGEST_TIME: expected HH:MM"),
    ("DIGEST_TIMEZONE", "Mars/Olympus", "DIGEST_TIMEZONE: expected an IANA time zone"),
    ("DIGEST_CHART", "maybe", "DIGEST_CHART: Input should be a valid boolean"),
    ("DIGEST_CHART_TIMEOUT", "0", "DIGEST_CHART_TIMEOUT: Input should be greater than 0"),
    ("RUN_MODE", "push", "RUN_MODE: Input should be 'polling' or 'webhook'"),
    ("WEBHOOK_BASE_URL", "bots.example.com", "WEBHOOK_BASE_URL: expected the public origin"),
    ("WEBHOOK_BASE_URL", "https://x.org/?a=1", "WEBHOOK_BASE_URL: expected no ?query"),
    ("WEBHOOK_PATH", "webhook", "WEBHOOK_PATH: expected a URL path"),
    ("WEBHOOK_PATH", "/a b", "WEBHOOK_PATH: expected a URL path"),
    ("WEBHOOK_SECRET", "short-secret", "WEBHOOK_SECRET: must be at least 32 characters (got 12)"),
    ("WEBHOOK_SECRET", "a+" * 20, "WEBHOOK_SECRET: Telegram accepts 32-256 characters"),
    ("WEBHOOK_LISTEN_PORT", "0", "WEBHOOK_LISTEN_PORT: Input should be greater than or equal"),
    ("WEBHOOK_MAX_CONNECTIONS", "101", "WEBHOOK_MAX_CONNECTIONS: Input should be less than"),
    ("WEBHOOK_DELETE_ON_SHUTDOWN", "maybe", "WEBHOOK_DELETE_ON_SHUTDOWN: Input should be a valid"),
    ("REDIS_URL", "localhost:6379", "REDIS_URL: expected redis://"),
    ("BOT_SLUG", "Picture Bot", "BOT_SLUG: expected the bot's slug"),
    ("METRICS_PORT", "65536", "METRICS_PORT: Input should be less than or equal to 65535"),
    ("METRICS_PORT", "-1", "METRICS_PORT: Input should be greater than or equal to 0"),
    ("METRICS_PORT", "http", "METRICS_PORT: Input should be a valid integer"),
    ("METRICS_HOST", "", "METRICS_HOST: String should have at least 1 character"),
    ("ADMIN_USER_IDS", "1,alice", "ADMIN_USER_IDS: expected comma-separated numeric Telegram"),
    ("BROADCAST_RATE", "0", "BROADCAST_RATE: Input should be greater than 0"),
    ("BROADCAST_RATE", "fast", "BROADCAST_RATE: Input should be a valid number"),
]
# Their bad values must not be echoed either.
SECRET_VARIABLES = {"BOT_TOKEN", "DATABASE_URL", "WEBHOOK_SECRET", "REDIS_URL"}
# Any text is a valid value of these (DATABASE_PASSWORD alone; beside a DATABASE_URL with a
# password of its own it is refused: test_secret_files.py).
ALWAYS_VALID = {"HEALTH_FILE", "WEBHOOK_LISTEN_HOST", "DATABASE_PASSWORD"}


def test_every_variable_has_a_bad_value_case() -> None:
    covered = {name for name, _, _ in BAD_VALUES}
    assert covered | ALWAYS_VALID == set(SharedSettings.model_fields)


@pytest.fixture(params=["shared", "bot"])
def settings_class(request: pytest.FixtureRequest, bot_module: str) -> type[SharedSettings]:
    """SharedSettings, and this bot's Settings, which redefines some variables' defaults."""
    if request.param == "shared":
        return SharedSettings
    found: type[SharedSettings] = importlib.import_module(f"{bot_module}.settings").Settings
    return found


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    BAD_VALUES,
    ids=[f"{name}={value[:12]}" for name, value, _ in BAD_VALUES],
)
def test_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    settings_class: type[SharedSettings],
    name: str,
    value: str,
    expected: str,
) -> None:
    if name != "BOT_TOKEN":
        monkeypatch.setenv("BOT_TOKEN", TOKEN)
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        load_settings(settings_class)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"Configuration error: {expected}"), lines[0]
    if name in SECRET_VARIABLES:
        assert value not in lines[0]


def test_missing_token(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_settings(SharedSettings)
    assert (
        capsys.readouterr().err.strip() == "Configuration error: BOT_TOKEN: is required but not set"
    )


def test_empty_health_file_means_the_file_the_healthcheck_reads(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BOT_TOKEN", TOKEN)
    monkeypatch.setenv("HEALTH_FILE", "")
    settings = load_settings(SharedSettings)
    assert settings.HEALTH_FILE == DEFAULT_HEALTH_FILE  # not Path("") == Path("."), the cwd
    health_check([], {"HEALTH_FILE": ""})
    assert str(DEFAULT_HEALTH_FILE) in capsys.readouterr().out


def run_entrypoint(
    bot_module: str, cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """``python -m <bot>`` as in production, in an empty directory, with only ``env`` set."""
    root = Path(__file__).resolve().parents[2]
    return subprocess.run(
        [sys.executable, "-m", bot_module],
        env=clean_environment(root, env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,  # importing aiogram takes seconds, more on a busy machine
        check=False,
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


@pytest.mark.slow
def test_every_bad_variable_is_one_line_from_the_real_entrypoint(
    bot_module: str, tmp_path: Path
) -> None:
    """All variables wrong at once (one process instead of one each: every start imports
    aiogram): still exactly one line per variable, each naming it and what it expects."""
    first = {name: (value, expected) for name, value, expected in reversed(BAD_VALUES)}
    result = run_entrypoint(bot_module, tmp_path, {name: v for name, (v, _) in first.items()})
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith("Configuration error: ") for line in lines), lines
    for name, (value, expected) in first.items():
        named = [line for line in lines if line.startswith(f"Configuration error: {name}:")]
        assert len(named) == 1, (name, lines)
        assert named[0].startswith(f"Configuration error: {expected}"), named[0]
        if name in SECRET_VARIABLES:
            assert value not in named[0]
    assert len(lines) == len(first)


def test_webhook_mode_needs_a_public_url_and_a_long_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BOT_TOKEN", TOKEN)
    monkeypatch.setenv("RUN_MODE", "webhook")
    monkeypatch.setenv("WEBHOOK_SECRET", "")  # empty, as .env.example leaves it
    with pytest.raises(SystemExit):
        load_settings(SharedSettings)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "Configuration error: WEBHOOK_BASE_URL: is required when RUN_MODE=webhook: the public"
        " https:// origin Telegram sends updates to, e.g. https://bots.example.com",
        "Configuration error: WEBHOOK_SECRET: must be at least 32 characters when"
        " RUN_MODE=webhook; generate one with: openssl rand -hex 32",
    ]
    monkeypatch.setenv("WEBHOOK_BASE_URL", "https://bots.example.com/")
    monkeypatch.setenv("WEBHOOK_SECRET", "0123456789abcdef" * 2)
    settings = load_settings(SharedSettings)
    assert settings.WEBHOOK_BASE_URL == "https://bots.example.com"
    assert settings.webhook_secret not in repr(settings)
    monkeypatch.setenv("RUN_MODE", "polling")
    monkeypatch.setenv("WEBHOOK_SECRET", "")
    assert load_settings(SharedSettings).WEBHOOK_SECRET is None  # polling needs no secret


def test_log_secrets_cover_webhook_secret_and_redis_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOT_TOKEN", TOKEN)
    monkeypatch.setenv("REDIS_URL", "redis://:r3dis-pass@redis:6379/0")
    monkeypatch.setenv("WEBHOOK_SECRET", "s" * 40)
    assert load_settings(SharedSettings).log_secrets() == [TOKEN, "r3dis-pass", "s" * 40]


@pytest.mark.slow  # starts bot processes
def test_webhook_mode_without_secret_stops_the_real_entrypoint(
    bot_module: str, tmp_path: Path
) -> None:
    env = {"BOT_TOKEN": TOKEN, "RUN_MODE": "webhook", "WEBHOOK_BASE_URL": "https://x.org"}
    result = run_entrypoint(bot_module, tmp_path, env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "Configuration error: WEBHOOK_SECRET: must be at least 32 characters when"
        " RUN_MODE=webhook; generate one with: openssl rand -hex 32"
    )
