"""This bot's settings: the shared variables with this bot's defaults, plus its own."""

from datetime import time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr
from pydantic_settings import NoDecode

from ecosystem_shared.config import SharedSettings

# The bot's own SQL, applied at start after the shared schema (idempotent, in name order).
MIGRATIONS = sorted((Path(__file__).parent / "migrations").glob("*.sql"))


class Settings(SharedSettings):
    BOT_NAME: str = "API Bot"
    LANGUAGE: Literal["ru", "en"] = "en"
    RATE_LIMIT_SECONDS: float = 3.0
    DIGEST_TIME: time = time(0, 0)
    DIGEST_TIMEZONE: str = "Europe/Moscow"
    WEBHOOK_PATH: str = "/webhook/api-bot"
    # This bot's main activity: the digest chart's third series (ANALYTICS_MAIN_EVENTS).
    ANALYTICS_MAIN_EVENTS: Annotated[tuple[str, ...], NoDecode] = (
        "command_used",
        "api_request_success",
    )

    # External API
    EXTERNAL_API_BASE_URL: str = "https://api.example.com"
    EXTERNAL_API_KEY: SecretStr | None = None
    API_REQUEST_TIMEOUT: float = Field(default=10.0, gt=0, le=300)
