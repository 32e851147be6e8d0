"""Settings shared by every bot of the ecosystem (environment variables).

A bot subclasses :class:`SharedSettings` in its own ``settings.py`` to change defaults and add
variables. :func:`load_settings` turns a validation error into one readable line per variable.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import pytz
from annotated_types import BaseMetadata
from pydantic import (
    Field,
    SecretStr,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ecosystem_shared.health import DEFAULT_HEALTH_FILE
from ecosystem_shared.log import secrets_of
from ecosystem_shared.secret_files import SecretFileError, SecretFilesSource

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

S = TypeVar("S", bound="SharedSettings")
MIN_WEBHOOK_SECRET = 32


class SharedSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=True,
        validate_default=True,
    )

    BOT_TOKEN: SecretStr
    BOT_NAME: str = Field(default="Bot", min_length=1, max_length=64)
    # The `bot` label of the metrics; empty: the last part of WEBHOOK_PATH (/webhook/<slug>).
    BOT_SLUG: str = ""
    LANGUAGE: Literal["ru", "en"] = "ru"
    LOG_LEVEL: LogLevel = "INFO"

    DATABASE_URL: SecretStr | None = None
    # The password of DATABASE_URL's user when the URL has none: a Docker secret
    # (DATABASE_PASSWORD_FILE=/run/secrets/...) stays out of the URL and the environment.
    DATABASE_PASSWORD: SecretStr | None = None
    DB_POOL_MIN_SIZE: int = Field(default=1, ge=0, le=50)
    DB_POOL_MAX_SIZE: int = Field(default=5, ge=1, le=100)
    DB_RECONNECT_SECONDS: float = Field(default=5.0, gt=0, le=3600)

    ENABLE_ANALYTICS: bool = True
    ANALYTICS_CHANNEL_ID: int | None = Field(default=None, ge=-(2**63), lt=2**63)  # a chat id
    ANALYTICS_BUFFER_SIZE: int = Field(default=10_000, ge=10, le=10_000_000)
    ANALYTICS_BATCH_SIZE: int = Field(default=500, ge=1, le=100_000)
    ANALYTICS_FLUSH_SECONDS: float = Field(default=1.0, gt=0, le=3600)
    # Event types that are this bot's main activity (the digest chart's third series), comma-
    # separated; empty: every event but starts and errors. A bot's Settings names its own.
    ANALYTICS_MAIN_EVENTS: Annotated[tuple[str, ...], NoDecode] = ()
    # Raw events older than this many whole months are dropped (after a backup of them exists;
    # daily rollups stay). Empty: keep everything.
    ANALYTICS_RETENTION_MONTHS: int | None = Field(default=None, ge=1, le=1200)

    RATE_LIMIT_SECONDS: float = Field(default=3.0, ge=0, le=3600)
    # Updates handled at once when polling (aiogram starts a task per update, unbounded by
    # default): a burst of 1,000 updates would hold 1,000 handler tasks, and the process keeps
    # the memory of that peak. Webhook mode is bounded by WEBHOOK_MAX_CONNECTIONS instead.
    MAX_CONCURRENT_UPDATES: int = Field(default=32, ge=1, le=10_000)

    TELEGRAM_API_BASE_URL: str | None = None
    TELEGRAM_API_LOCAL: bool = False

    DIGEST_TIME: time = time(0, 0)
    DIGEST_TIMEZONE: str = "Europe/Moscow"
    # The 14-day chart sent with the digest and by /stats (drawn in a subprocess).
    DIGEST_CHART: bool = True
    DIGEST_CHART_TIMEOUT: float = Field(default=60.0, gt=0, le=600)

    HEALTH_FILE: Path | None = DEFAULT_HEALTH_FILE

    # Prometheus metrics on http://METRICS_HOST:METRICS_PORT/metrics (0: off, nothing counted,
    # nothing listens).
    # Polling: a small server that also answers /healthz; webhook mode: the webhook's server.
    METRICS_PORT: int = Field(default=0, ge=0, le=65535)
    METRICS_HOST: str = Field(default="127.0.0.1", min_length=1)

    # How updates arrive: long polling (one process per token) or a webhook (any number of
    # processes behind a reverse proxy; see ecosystem_shared/webhook.py).
    RUN_MODE: Literal["polling", "webhook"] = "polling"
    WEBHOOK_BASE_URL: str | None = None  # public origin Telegram posts to, https://bots.example.com
    WEBHOOK_PATH: str = "/webhook"  # a bot's Settings derives it from its slug
    WEBHOOK_SECRET: SecretStr | None = None  # X-Telegram-Bot-Api-Secret-Token, 32-256 characters
    WEBHOOK_LISTEN_HOST: str = "127.0.0.1"  # the container's compose fragment sets 0.0.0.0
    WEBHOOK_LISTEN_PORT: int = Field(default=8080, ge=1, le=65535)
    WEBHOOK_MAX_CONNECTIONS: int = Field(default=40, ge=1, le=100)
    # With several replicas, deleting the webhook when one stops cuts off all of them.
    WEBHOOK_DELETE_ON_SHUTDOWN: bool = False

    # Shared state of several processes (FSM, per-user locks, rate limits); empty = in memory.
    REDIS_URL: SecretStr | None = None

    # Comma-separated Telegram user ids allowed to run admin commands (/broadcast, /stats...).
    ADMIN_USER_IDS: Annotated[frozenset[int], NoDecode] = frozenset()
    # Broadcast messages per second (ecosystem_shared/broadcast_sender.py). Telegram allows
    # about 30 per second per bot for bulk messages (core.telegram.org/bots/faq, 2026-12-05):
    # 25 leaves the rest for replies to users.
    BROADCAST_RATE: float = Field(default=25.0, gt=0, le=1000)

    @field_validator("BOT_TOKEN")
    @classmethod
    def _token_shape(cls, value: SecretStr) -> SecretStr:
        token = value.get_secret_value()
        bot_id, _, secret = token.partition(":")
        if not bot_id.isdigit() or not secret or any(c.isspace() for c in token):
            raise ValueError("expected the token from @BotFather, like 123456789:AAE...")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # NAME_FILE (secret_files.py) at the level of the place it is set: the environment
        # before .env, as for NAME itself.
        dotenv_variables = getattr(dotenv_settings, "env_vars", {})
        return (
            init_settings,
            SecretFilesSource(settings_cls, os.environ, "in the environment"),
            env_settings,
            SecretFilesSource(settings_cls, dotenv_variables, "in .env"),
            dotenv_settings,
            file_secret_settings,
        )

    @field_validator(
        "DATABASE_URL",
        "DATABASE_PASSWORD",
        "TELEGRAM_API_BASE_URL",
        "ANALYTICS_CHANNEL_ID",
        "ANALYTICS_RETENTION_MONTHS",
        "WEBHOOK_BASE_URL",
        "WEBHOOK_SECRET",
        "REDIS_URL",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # `.env` templates leave optional values empty (`TELEGRAM_API_BASE_URL=`).
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("ADMIN_USER_IDS", mode="before")
    @classmethod
    def _id_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            items = [item.strip() for item in value.split(",") if item.strip()]
            if not all(item.lstrip("-").isdigit() for item in items):
                raise ValueError("expected comma-separated numeric Telegram user ids")
            return frozenset(int(item) for item in items)
        return value

    @field_validator("ANALYTICS_MAIN_EVENTS", mode="before")
    @classmethod
    def _event_types(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list | tuple):
            bad = [item for item in value if not re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", str(item))]
            if bad:
                raise ValueError(
                    "expected comma-separated event types of letters, digits and _.:-"
                    f" (not {bad[0]!r})"
                )
            return tuple(str(item) for item in value)
        return value

    @field_validator("DATABASE_URL")
    @classmethod
    def _database_url_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError("expected postgresql://user:password@host:5432/database")
        return value

    @field_validator("DATABASE_PASSWORD")
    @classmethod
    def _database_password(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        url = info.data.get("DATABASE_URL")
        if value is None or url is None:
            return value
        parts = urlsplit(url.get_secret_value())
        if parts.password is not None:
            raise ValueError("DATABASE_URL has a password already; give it in one place only")
        if not parts.username:
            raise ValueError("DATABASE_URL needs a user for it: postgresql://user@host/database")
        return value

    @field_validator("TELEGRAM_API_BASE_URL")
    @classmethod
    def _api_url_shape(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")) or value[-3:] == "://":
            raise ValueError("expected an http(s) URL such as http://telegram-bot-api:8081")
        return value.rstrip("/")

    @field_validator("WEBHOOK_BASE_URL")
    @classmethod
    def _webhook_base_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.data.get("RUN_MODE") == "webhook":
                raise ValueError(
                    "is required when RUN_MODE=webhook: the public https:// origin Telegram"
                    " sends updates to, e.g. https://bots.example.com"
                )
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("expected the public origin, e.g. https://bots.example.com")
        if parts.query or parts.fragment:
            raise ValueError("expected no ?query or #fragment (the path is WEBHOOK_PATH)")
        return value.rstrip("/")

    @field_validator("WEBHOOK_PATH")
    @classmethod
    def _webhook_path(cls, value: str) -> str:
        if not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", value):
            raise ValueError("expected a URL path such as /webhook/picture-bot")
        return value

    @field_validator("WEBHOOK_SECRET")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        webhook = info.data.get("RUN_MODE") == "webhook"
        secret = value.get_secret_value() if value is not None else ""
        if value is None and not webhook:
            return None
        # Telegram takes 1-256 characters of A-Z a-z 0-9 _ - (Bot API, setWebhook secret_token);
        # fewer than 32 would be guessable.
        if len(secret) < MIN_WEBHOOK_SECRET:
            raise ValueError(
                f"must be at least {MIN_WEBHOOK_SECRET} characters"
                + (" when RUN_MODE=webhook" if value is None else f" (got {len(secret)})")
                + "; generate one with: openssl rand -hex 32"
            )
        if len(secret) > 256 or not re.fullmatch(r"[A-Za-z0-9_-]+", secret):
            raise ValueError(
                "Telegram accepts 32-256 characters of A-Z, a-z, 0-9, _ and - only"
                " (openssl rand -hex 32 gives a valid one)"
            )
        return value

    @field_validator("BOT_SLUG")
    @classmethod
    def _slug(cls, value: str) -> str:
        if value and not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", value):
            raise ValueError("expected the bot's slug: a-z, 0-9, - and _ (e.g. picture-bot)")
        return value

    @field_validator("REDIS_URL")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ValueError("expected redis://[:password@]host:6379/0 (or rediss://, unix://)")
        return value

    @field_validator("HEALTH_FILE", mode="before")
    @classmethod
    def _empty_health_file(cls, value: Any) -> Any:
        # Empty means the default, as for the HEALTHCHECK (`python -m ecosystem_shared.health`).
        if isinstance(value, str) and not value.strip():
            return DEFAULT_HEALTH_FILE
        return value

    @field_validator("DIGEST_TIME", mode="before")
    @classmethod
    def _digest_time(cls, value: Any) -> Any:
        if isinstance(value, str):
            hours, sep, minutes = value.strip().partition(":")
            valid = sep and hours.isdigit() and minutes.isdigit() and len(minutes) == 2
            if not valid or not (0 <= int(hours) <= 23 and 0 <= int(minutes) <= 59):
                raise ValueError("expected HH:MM in 24-hour form, e.g. 00:00 or 09:30")
            return time(int(hours), int(minutes))
        return value

    @field_validator("DIGEST_TIMEZONE")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            pytz.timezone(value)
        except pytz.UnknownTimeZoneError:
            raise ValueError("expected an IANA time zone such as Europe/Moscow or UTC") from None
        return value

    @field_validator("*")
    @classmethod
    def _shared_bounds(cls, value: Any, info: ValidationInfo) -> Any:
        # A bot's Settings redefines shared variables to change their defaults, and a redefined
        # field loses the bounds given here with Field(...): check them again.
        adapter = _bounds(info.field_name) if cls is not SharedSettings else None
        if adapter is not None:
            try:
                adapter.validate_python(value)
            except ValidationError as error:
                raise ValueError(error.errors()[0]["msg"]) from None
        return value

    @property
    def database_dsn(self) -> str | None:
        """DATABASE_URL, with DATABASE_PASSWORD (percent-encoded) when that is set."""
        if self.DATABASE_URL is None:
            return None
        url = self.DATABASE_URL.get_secret_value()
        if self.DATABASE_PASSWORD is None:
            return url
        parts = urlsplit(url)
        password = quote(self.DATABASE_PASSWORD.get_secret_value(), safe="")
        user, _, host = parts.netloc.rpartition("@")
        return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))

    @property
    def bot_label(self) -> str:
        """The bot's slug: BOT_SLUG, else what WEBHOOK_PATH ends with (a bot's default path is
        /webhook/<slug>)."""
        return self.BOT_SLUG or self.WEBHOOK_PATH.rstrip("/").rsplit("/", 1)[-1]

    @property
    def redis_url(self) -> str | None:
        return self.REDIS_URL.get_secret_value() if self.REDIS_URL else None

    @property
    def webhook_secret(self) -> str:
        return self.WEBHOOK_SECRET.get_secret_value() if self.WEBHOOK_SECRET else ""

    def log_secrets(self) -> list[str]:
        """Literal strings the log redacts: token, database and Redis passwords, webhook secret."""
        found = secrets_of(self.BOT_TOKEN.get_secret_value(), self.database_dsn)
        redis_password = urlsplit(self.redis_url).password if self.redis_url else None
        db_password = self.DATABASE_PASSWORD.get_secret_value() if self.DATABASE_PASSWORD else ""
        extra = (redis_password, self.webhook_secret, db_password)
        return found + [value for value in extra if value and value not in found]

    @property
    def analytics_enabled(self) -> bool:
        return self.ENABLE_ANALYTICS and self.DATABASE_URL is not None


@functools.cache
def _bounds(name: str | None) -> TypeAdapter[Any] | None:
    """Validates a shared variable's bounds (min_length, ge, ...); None if it has none."""
    field = SharedSettings.model_fields.get(name or "")
    bounds = [item for item in field.metadata if isinstance(item, BaseMetadata)] if field else []
    if field is None or not bounds:
        return None
    return TypeAdapter(Annotated[(field.annotation, *bounds)])


def describe_errors(error: ValidationError) -> list[str]:
    """One line per bad variable, without echoing secret values."""
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        name = ".".join(str(part) for part in item["loc"]) or "settings"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "missing":
            message = "is required but not set"
        lines.append(f"{name}: {message}")
    return lines


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build settings or exit with one line per bad variable (exit status 2)."""
    try:
        return cls(**overrides)
    except SecretFileError as error:
        print(f"Configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except ValidationError as error:
        for line in describe_errors(error):
            print(f"Configuration error: {line}", file=sys.stderr)
        raise SystemExit(2) from None
