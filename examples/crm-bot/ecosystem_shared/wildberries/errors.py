"""What can go wrong when fetching from the Wildberries CDN."""

from __future__ import annotations

MB = 1024 * 1024


class MediaSourceError(Exception):
    """The CDN answered something other than the file or "not found"."""


class MediaTooLarge(Exception):
    """A file is larger than we may download or upload."""

    def __init__(self, what: str, limit_bytes: int) -> None:
        super().__init__(f"{what} is larger than {limit_bytes / MB:g} MB")
        self.what = what
        self.limit_bytes = limit_bytes


class ConversionError(Exception):
    """ffmpeg is missing, failed or ran out of time."""


class MalformedError(ValueError):
    """A route map, card.json or playlist that does not have the expected shape."""


def require_int(value: object, what: str) -> int:
    """``value`` if it is an integer (not a bool), else MalformedError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedError(f"{what} is not an integer: {value!r}")
    return value
