"""This bot's settings: the shared variables with this bot's defaults, plus its own."""

from datetime import time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from ecosystem_shared.config import SharedSettings

# The bot's own SQL, applied at start after the shared schema (idempotent, in name order).
MIGRATIONS = sorted((Path(__file__).parent / "migrations").glob("*.sql"))


class Settings(SharedSettings):
    BOT_NAME: str = "CRM Bot"
    LANGUAGE: Literal["ru", "en"] = "ru"
    RATE_LIMIT_SECONDS: float = 3.0
    DIGEST_TIME: time = time(0, 0)
    DIGEST_TIMEZONE: str = "Europe/Moscow"
    WEBHOOK_PATH: str = "/webhook/crm-bot"
    # This bot's main activity: the digest chart's third series (ANALYTICS_MAIN_EVENTS).
    ANALYTICS_MAIN_EVENTS: Annotated[tuple[str, ...], NoDecode] = (
        "command_used",
        "subscription_purchased",
    )

    # CRM
    SUBSCRIPTION_DAYS: int = Field(default=30, ge=1, le=3650)
    SUBSCRIPTION_PRICE: float = Field(default=299.0, ge=0)
    # Comma-separated Telegram user ids allowed to run /grant and /stats.
    ADMIN_USER_IDS: Annotated[frozenset[int], NoDecode] = frozenset()

    @field_validator("ADMIN_USER_IDS", mode="before")
    @classmethod
    def _id_list(cls, value: object) -> object:
        if isinstance(value, str):
            items = [item.strip() for item in value.split(",") if item.strip()]
            if not all(item.lstrip("-").isdigit() for item in items):
                raise ValueError("expected comma-separated numeric Telegram user ids")
            return frozenset(int(item) for item in items)
        return value
