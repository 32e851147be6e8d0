"""The media source this bot fetches articles from, and the sizes Telegram takes from it.

``bot_services`` builds the source once at start (``media_source``, what the handler asks for);
the runtime starts it before the first update (it loads the saved route map and refreshes the live
one in the background) and closes it at shutdown. To use another shop, return from
``build_source`` any object with ``fetch(nm_id)`` and ``close()`` (the ``MediaSource`` protocol;
its ``start()``, if it has one, is awaited at start).
"""

from ecosystem_shared.analytics import Analytics
from ecosystem_shared.wildberries import MB, WbMediaSource

from ..settings import Settings

# What a Local Bot API server (--local) accepts per file.
LOCAL_API_LIMIT_MB = 2000


def uses_local_api(settings: Settings) -> bool:
    return settings.TELEGRAM_API_LOCAL and settings.TELEGRAM_API_BASE_URL is not None


def upload_limit(settings: Settings) -> int:
    """Largest file uploaded as multipart (the cloud Bot API refuses more than 50 MB)."""
    return int(settings.MEDIA_UPLOAD_LIMIT_MB * MB)


def sendable_limit(settings: Settings) -> int:
    """Largest file worth downloading: larger ones could not be sent anyway."""
    return LOCAL_API_LIMIT_MB * MB if uses_local_api(settings) else upload_limit(settings)


def build_source(settings: Settings, analytics: Analytics) -> WbMediaSource:
    async def record(problem: str) -> None:  # route map problems belong to no user
        await analytics.track_error(None, problem)

    return WbMediaSource(
        route_map_url=settings.WB_ROUTE_MAP_URL,
        photo_base_url=settings.WB_PHOTO_BASE_URL,
        video_base_url=settings.WB_VIDEO_BASE_URL,
        route_map_file=settings.WB_ROUTE_MAP_FILE,
        route_map_refresh=settings.WB_ROUTE_MAP_REFRESH_HOURS * 3600,
        max_photos=settings.MEDIA_MAX_PHOTOS,
        timeout=settings.WB_API_TIMEOUT,
        rate_delay=settings.WB_RATE_LIMIT_DELAY,
        max_bytes=sendable_limit(settings),
        max_video_bytes=int(settings.HLS_MAX_VIDEO_SIZE_MB * MB),
        # The Local Bot API server must see the files at the same path.
        work_root=settings.LOCAL_FILES_DIR if uses_local_api(settings) else None,
        ffmpeg_path=settings.FFMPEG_PATH,
        ffmpeg_timeout=settings.FFMPEG_TIMEOUT,
        on_error=record,
    )
