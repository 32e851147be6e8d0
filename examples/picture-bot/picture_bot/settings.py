"""This bot's settings: the shared variables with this bot's defaults, plus its own."""

from datetime import time
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from ecosystem_shared.config import SharedSettings
from ecosystem_shared.wildberries import ROUTE_MAP_URL, base_url_error

# The bot's own SQL, applied at start after the shared schema (idempotent, in name order).
MIGRATIONS = sorted((Path(__file__).parent / "migrations").glob("*.sql"))


class Settings(SharedSettings):
    BOT_NAME: str = "Picture Bot"
    LANGUAGE: Literal["ru", "en"] = "ru"
    RATE_LIMIT_SECONDS: float = 3.0
    DIGEST_TIME: time = time(0, 0)
    DIGEST_TIMEZONE: str = "Europe/Moscow"
    WEBHOOK_PATH: str = "/webhook/picture-bot"
    # This bot's main activity: the digest chart's third series (ANALYTICS_MAIN_EVENTS).
    ANALYTICS_MAIN_EVENTS: Annotated[tuple[str, ...], NoDecode] = (
        "photo_sent",
        "video_sent",
    )
    TELEGRAM_API_BASE_URL: str | None = "http://telegram-bot-api:8081"
    TELEGRAM_API_LOCAL: bool = True

    # Media: the Wildberries CDN and what may be sent
    WB_API_TIMEOUT: float = Field(default=30.0, gt=0, le=600)
    WB_RATE_LIMIT_DELAY: float = Field(default=0.01, ge=0, le=60)
    WB_ROUTE_MAP_URL: str | None = ROUTE_MAP_URL
    # The last good route map. /tmp is the container's own tmpfs (compose.yaml), and the file is
    # replaced by renaming a fresh private file, never written through a planted name.
    WB_ROUTE_MAP_FILE: Path | None = Path("/tmp/wb-route-map.json")  # nosec B108
    WB_ROUTE_MAP_REFRESH_HOURS: float = Field(default=6.0, gt=0, le=168)
    WB_PHOTO_BASE_URL: str = "https://{host}"
    WB_VIDEO_BASE_URL: str = "https://{host}"
    MEDIA_MAX_PHOTOS: int = Field(default=30, ge=1, le=100)
    MEDIA_UPLOAD_LIMIT_MB: float = Field(default=50.0, gt=0, le=2000)
    HLS_MAX_VIDEO_SIZE_MB: float = Field(default=100.0, gt=0, le=2000)
    FFMPEG_PATH: str = "ffmpeg"
    FFMPEG_TIMEOUT: float = Field(default=300.0, gt=0, le=3600)
    LOCAL_FILES_DIR: Path = Path("/srv/bot-files")

    @field_validator("WB_ROUTE_MAP_URL", "WB_ROUTE_MAP_FILE", mode="before")
    @classmethod
    def _empty_is_off(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("WB_ROUTE_MAP_URL")
    @classmethod
    def _route_map_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http(s) URL, or empty for the built-in table only")
        return value

    @field_validator("WB_PHOTO_BASE_URL", "WB_VIDEO_BASE_URL")
    @classmethod
    def _base_url(cls, value: str) -> str:
        error = base_url_error(value)
        if error:
            raise ValueError(error)
        return value
