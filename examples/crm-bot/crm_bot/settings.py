"""This bot's settings: the shared variables with this bot's defaults, plus its own."""

from datetime import time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field
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
    # ADMIN_USER_IDS (who may run /grant, /stats, /broadcast) is a shared setting.
