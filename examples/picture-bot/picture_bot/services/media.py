"""Media sources of the Picture Bot: where an article's photos and video come from.

A source is anything with ``fetch(nm_id) -> MediaBundle`` and ``close()``. The bundled
:class:`HttpMediaSource` downloads from URL templates (the Wildberries CDN by default), so tests and
other shops only change settings. Downloads stream to disk and abort above a size limit, so a huge
file never sits in memory and never gets further than the limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import string
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

import aiohttp

logger = logging.getLogger(__name__)

MB = 1024 * 1024
# Telegram's album size (sendMediaGroup takes 2..10 items).
ALBUM_SIZE = 10
# Photos requested at once: the CDN answers fast, but one article should not flood it.
PHOTO_CONCURRENCY = 5
DOWNLOAD_CHUNK = 256 * 1024
URL_PLACEHOLDERS = frozenset({"nm_id", "vol", "part", "basket", "n"})

T = TypeVar("T")


class MediaSourceError(Exception):
    """The source answered something other than the file or "not found"."""


class MediaTooLarge(Exception):
    """A file is larger than we may download or upload."""

    def __init__(self, what: str, limit_bytes: int) -> None:
        super().__init__(f"{what} is larger than {limit_bytes / MB:g} MB")
        self.what = what
        self.limit_bytes = limit_bytes


class ConversionError(Exception):
    """ffmpeg is missing, failed or ran out of time."""


@dataclass(frozen=True, slots=True)
class MediaFile:
    path: Path
    size: int


@dataclass(slots=True)
class MediaBundle:
    photos: list[MediaFile] = field(default_factory=list)
    video: MediaFile | None = None
    # Names of files not fetched because of their size, and short descriptions of other failures:
    # the handler tells the user and records an error instead of silently sending less.
    too_large: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    # Where the files live; removed by cleanup() once they were sent.
    directory: Path | None = None

    @property
    def empty(self) -> bool:
        return not self.photos and self.video is None

    def cleanup(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


class MediaSource(Protocol):
    async def fetch(self, nm_id: int) -> MediaBundle: ...

    async def close(self) -> None: ...


def chunked(items: Sequence[T], size: int = ALBUM_SIZE) -> Iterator[list[T]]:
    """Split into lists of at most ``size`` items (25 photos -> 10, 10, 5)."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


# Last `vol` served by each basket host, as observed on the Wildberries CDN. Best effort: WB adds
# hosts as the catalogue grows and publishes no table; rows past basket 22 are extrapolated from
# the recent step of 216 vols. When it drifts, set MEDIA_PHOTO_URL with an explicit host.
_BASKET_LAST_VOL = (
    143, 287, 431, 719, 1007, 1061, 1115, 1169, 1313, 1601, 1655,
    1919, 2045, 2189, 2405, 2621, 2837, 3053, 3269, 3485, 3701, 3917,
    4133, 4349, 4565, 4781, 4997, 5213, 5429, 5645, 5861, 6077,
)  # fmt: skip


def wb_basket(nm_id: int) -> str:
    """Best-effort Wildberries basket host number ("01".."32") of an article."""
    vol = nm_id // 100_000
    for number, last_vol in enumerate(_BASKET_LAST_VOL, start=1):
        if vol <= last_vol:
            return f"{number:02d}"
    return f"{len(_BASKET_LAST_VOL):02d}"


def media_url(template: str, nm_id: int, n: int = 1) -> str:
    return template.format(
        nm_id=nm_id, vol=nm_id // 100_000, part=nm_id // 1000, basket=wb_basket(nm_id), n=n
    )


def url_template_error(template: str) -> str | None:
    """Why ``template`` is not a usable URL template, or None when it is."""
    if not template.startswith(("http://", "https://")):
        return "expected an http(s) URL template"
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as error:
        return f"bad braces in the URL template: {error}"
    unknown = names - URL_PLACEHOLDERS
    if unknown:
        allowed = ", ".join("{" + name + "}" for name in sorted(URL_PLACEHOLDERS))
        return f"unknown placeholder(s) {sorted(unknown)}; allowed: {allowed}"
    return None


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def is_hls(url_or_path: str | Path) -> bool:
    return urlsplit(str(url_or_path)).path.lower().endswith(".m3u8")


async def convert_hls_to_mp4(
    url_or_path: str | Path,
    dest: Path,
    ffmpeg_path: str,
    timeout: float,
    *,
    max_bytes: int | None = None,
) -> Path:
    """Remux an HLS stream into one MP4 without re-encoding (``-c copy``)."""
    source = str(url_or_path)
    remote = source.startswith(("http://", "https://"))
    # A playlist may name any URL; only let it reach the kind of place it came from.
    protocols = "http,https,tcp,tls,crypto" if remote else "file,crypto"
    args = [
        "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-protocol_whitelist", protocols,
        "-i", source,
        "-c", "copy",
        # HLS carries AAC in ADTS framing; MP4 needs it without.
        "-bsf:a", "aac_adtstoasc",
        "-movflags", "+faststart",
    ]  # fmt: skip
    if max_bytes is not None:
        # ffmpeg stops writing past this size: the result is then too large, not a long download.
        args += ["-fs", str(max_bytes + 1)]
    try:
        process = await asyncio.create_subprocess_exec(
            ffmpeg_path,
            *args,
            str(dest),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except (FileNotFoundError, PermissionError) as error:
        raise ConversionError(
            f"ffmpeg not runnable at {ffmpeg_path!r} ({error.strerror}); "
            "install ffmpeg or set FFMPEG_PATH"
        ) from None
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise ConversionError(f"ffmpeg did not finish within {timeout:g} s") from None
    if process.returncode != 0:
        tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise ConversionError(f"ffmpeg exited with {process.returncode}: {' | '.join(tail)}")
    size = (await asyncio.to_thread(dest.stat)).st_size
    if max_bytes is not None and size > max_bytes:
        await asyncio.to_thread(_discard, dest)
        raise MediaTooLarge("the video", max_bytes)
    if size == 0:
        raise ConversionError("ffmpeg produced an empty file")
    return dest


class HttpMediaSource:
    """Photos ``n = 1..max_photos`` until the first 404, plus an optional mp4 or HLS video."""

    def __init__(
        self,
        photo_url: str,
        video_url: str | None = None,
        *,
        max_photos: int = 30,
        timeout: float = 30.0,
        max_bytes: int = 50 * MB,
        work_root: Path | None = None,
        ffmpeg_path: str = "ffmpeg",
        ffmpeg_timeout: float = 300.0,
    ) -> None:
        for template in (photo_url, video_url):
            error = template and url_template_error(template)
            if error:
                raise ValueError(f"{template!r}: {error}")
        self.photo_url = photo_url
        self.video_url = video_url
        self.max_photos = max_photos
        self.max_bytes = max_bytes
        self.work_root = work_root
        self.ffmpeg_path = ffmpeg_path
        self.ffmpeg_timeout = ffmpeg_timeout
        # No total timeout: a large video may take long; a stalled connection may not.
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        )

    async def close(self) -> None:
        await self._session.close()

    async def fetch(self, nm_id: int) -> MediaBundle:
        bundle = MediaBundle(directory=self._new_directory(nm_id))
        try:
            await self._fetch_photos(nm_id, bundle)
            await self._fetch_video(nm_id, bundle)
        except BaseException:
            bundle.cleanup()
            raise
        return bundle

    def _new_directory(self, nm_id: int) -> Path:
        if self.work_root is not None:
            self.work_root.mkdir(parents=True, exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix=f"{nm_id}-", dir=self.work_root))
        # A Local Bot API server reads these files as another user.
        os.chmod(directory, 0o755)
        return directory

    async def _fetch_photos(self, nm_id: int, bundle: MediaBundle) -> None:
        assert bundle.directory is not None
        for batch in chunked(range(1, self.max_photos + 1), PHOTO_CONCURRENCY):
            results = await asyncio.gather(
                *(self._fetch_photo(nm_id, n, bundle.directory) for n in batch),
                return_exceptions=True,
            )
            for n, result in zip(batch, results, strict=True):
                if result is None:  # 404: the article has no more photos
                    return
                if isinstance(result, MediaTooLarge):
                    bundle.too_large.append(f"photo {n}")
                elif isinstance(result, MediaFile):
                    bundle.photos.append(result)
                elif isinstance(result, MediaSourceError | aiohttp.ClientError | TimeoutError):
                    bundle.failed.append(f"photo {n}: {result or type(result).__name__}")
                    return
                else:
                    raise result

    async def _fetch_photo(self, nm_id: int, n: int, directory: Path) -> MediaFile | None:
        url = media_url(self.photo_url, nm_id, n)
        suffix = Path(urlsplit(url).path).suffix or ".jpg"
        return await self._download(url, directory / f"photo-{n:03d}{suffix}", f"photo {n}")

    async def _fetch_video(self, nm_id: int, bundle: MediaBundle) -> None:
        if not self.video_url:
            return
        assert bundle.directory is not None
        url = media_url(self.video_url, nm_id)
        try:
            if is_hls(url):
                # Probe first, so a missing video reads as "no video", not as an ffmpeg failure.
                playlist = await self._download(url, bundle.directory / "index.m3u8", "playlist")
                if playlist is None:
                    return
                dest = bundle.directory / "video.mp4"
                await convert_hls_to_mp4(
                    url, dest, self.ffmpeg_path, self.ffmpeg_timeout, max_bytes=self.max_bytes
                )
                bundle.video = MediaFile(dest, (await asyncio.to_thread(dest.stat)).st_size)
            else:
                suffix = Path(urlsplit(url).path).suffix or ".mp4"
                bundle.video = await self._download(
                    url, bundle.directory / f"video{suffix}", "video"
                )
        except MediaTooLarge:
            bundle.too_large.append("video")
        except (MediaSourceError, ConversionError, aiohttp.ClientError, TimeoutError) as error:
            logger.warning("Video of %s not fetched: %s", nm_id, error)
            bundle.failed.append(f"video: {error or type(error).__name__}")

    async def _download(self, url: str, dest: Path, what: str) -> MediaFile | None:
        """Stream ``url`` into ``dest``; None on 404; MediaTooLarge past ``max_bytes``."""
        async with self._session.get(url) as response:
            if response.status == 404:
                return None
            if response.status != 200:
                raise MediaSourceError(f"HTTP {response.status} for {what}")
            if response.content_length is not None and response.content_length > self.max_bytes:
                raise MediaTooLarge(what, self.max_bytes)
            size = 0
            try:
                with dest.open("wb") as out:
                    async for chunk in response.content.iter_chunked(DOWNLOAD_CHUNK):
                        size += len(chunk)
                        if size > self.max_bytes:
                            raise MediaTooLarge(what, self.max_bytes)
                        out.write(chunk)
            except BaseException:
                _discard(dest)
                raise
        if size == 0:
            raise MediaSourceError(f"empty {what}")
        return MediaFile(dest, size)
