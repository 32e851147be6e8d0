"""What a media source hands the bot: files on disk, what is missing and why, and cleanup."""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from aiogram.utils.media_group import MAX_MEDIA_GROUP_SIZE

# Telegram's album size (sendMediaGroup takes 2..10 items), as aiogram's MediaGroupBuilder has it.
ALBUM_SIZE = MAX_MEDIA_GROUP_SIZE

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class MediaFile:
    path: Path
    size: int


class SharedDirectory:
    """A directory of downloaded files, removed when its last user is done with it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.users = 0

    def acquire(self) -> None:
        self.users += 1

    def release(self) -> None:
        self.users -= 1
        if self.users <= 0:
            shutil.rmtree(self.path, ignore_errors=True)


@dataclass(slots=True)
class MediaBundle:
    photos: list[MediaFile] = field(default_factory=list)
    video: MediaFile | None = None
    # Files not fetched because of their size, and what the user misses for other reasons:
    # the handler tells the user and records an error instead of silently sending less.
    too_large: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    # What went wrong without costing the user anything (a malformed card, a wrong host):
    # recorded as error events.
    problems: list[str] = field(default_factory=list)
    # Where the files live; removed by cleanup() once every user of the bundle sent them.
    directory: Path | None = None
    _shared: SharedDirectory | None = field(default=None, repr=False)

    @property
    def empty(self) -> bool:
        return not self.photos and self.video is None

    def cleanup(self) -> None:
        shared, self._shared = self._shared, None
        if shared is not None:
            shared.release()
        elif self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None


class MediaSource(Protocol):
    async def fetch(self, nm_id: int) -> MediaBundle: ...

    async def close(self) -> None: ...


def chunked(items: Sequence[T], size: int = ALBUM_SIZE) -> Iterator[list[T]]:
    """Split into lists of at most ``size`` items (25 photos -> 10, 10, 5)."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
