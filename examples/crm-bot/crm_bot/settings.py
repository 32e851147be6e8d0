"""This bot's settings: the shared variables with this bot's defaults, plus its own."""

from datetime import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from ecosystem_shared.config import SharedSettings

# The bot's own SQL, applied at start after the shared schema (idempotent, in name order).
MIGRATIONS = sorted((Path(__file__).parent / "migrations").glob("*.sql"))


class Settings(SharedSettings):
    BOT_NAME: str = "CRM Bot"
    LANGUAGE: Literal["ru", "en"] = "ru"
    RATE_LIMIT_SECONDS: float = 3.0
    DIGEST_TIME: time = time(0, 0)
    DIGEST_TIMEZONE: str = "Europe/Moscow"

    # CRM
    SUBSCRIPTION_DAYS: int = Field(default=30, ge=1, le=3650)
    SUBSCRIPTION_PRICE: float = Field(default=299.0, ge=0)
