"""This bot's settings: the shared variables with this bot's defaults, plus its own."""

from datetime import time
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from ecosystem_shared.config import SharedSettings

from .services.media import url_template_error

# The bot's own SQL, applied at start after the shared schema (idempotent, in name order).
MIGRATIONS = sorted((Path(__file__).parent / "migrations").glob("*.sql"))


class Settings(SharedSettings):
    BOT_NAME: str = "Picture Bot"
    LANGUAGE: Literal["ru", "en"] = "ru"
    RATE_LIMIT_SECONDS: float = 3.0
    DIGEST_TIME: time = time(0, 0)
    DIGEST_TIMEZONE: str = "Europe/Moscow"
    TELEGRAM_API_BASE_URL: str | None = "http://telegram-bot-api:8081"
    TELEGRAM_API_LOCAL: bool = True

    # Media: where an article's photos and video come from, and how large they may be
    MEDIA_PHOTO_URL: str = (
        "https://basket-{basket}.wbbasket.ru/vol{vol}/part{part}/{nm_id}/images/big/{n}.webp"
    )
    MEDIA_VIDEO_URL: str | None = None
    MEDIA_MAX_PHOTOS: int = Field(default=30, ge=1, le=100)
    MEDIA_TIMEOUT: float = Field(default=30.0, gt=0, le=600)
    MEDIA_UPLOAD_LIMIT_MB: float = Field(default=50.0, gt=0, le=2000)
    FFMPEG_PATH: str = "ffmpeg"
    FFMPEG_TIMEOUT: float = Field(default=300.0, gt=0, le=3600)
    LOCAL_FILES_DIR: Path = Path("/srv/bot-files")

    @field_validator("MEDIA_VIDEO_URL", mode="before")
    @classmethod
    def _no_video(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("MEDIA_PHOTO_URL", "MEDIA_VIDEO_URL")
    @classmethod
    def _url_template(cls, value: str | None) -> str | None:
        error = value and url_template_error(value)
        if error:
            raise ValueError(error)
        return value
