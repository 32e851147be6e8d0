"""The source: an article's photos and video, composed of routes, card, CDN client and HLS."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp

from .bundle import MediaBundle, MediaFile, SharedDirectory, chunked
from .cache import BoundedCache
from .card import CARD_PATH, PHOTO_PATH, Card, parse_card
from .cdn_client import CdnClient
from .errors import MB, ConversionError, MalformedError, MediaSourceError, MediaTooLarge
from .hls import VIDEO_PATH, VIDEO_QUALITIES, convert_hls_to_mp4, parse_media_playlist
from .hosts import ErrorSink, Routes
from .routes import ROUTE_MAP_URL

logger = logging.getLogger(__name__)

# Files requested at once: the CDN answers fast, but one article should not flood it.
PHOTO_CONCURRENCY = 5
# Article numbers: positive, at most 10 digits (current ones have 10: vol 16412 is nm 1641296819).
MAX_ARTICLE = 9_999_999_999
# Resolved articles are remembered, at most this many, this long.
ARTICLE_CACHE_SIZE = 1024
ARTICLE_CACHE_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class ArticleMedia:
    """Where an article's media are: resolved once, cached for a while."""

    nm_id: int
    photo_urls: tuple[str, ...] = ()
    # No card: photos are probed on this URL template (``{n}`` per photo) until a 404.
    probe_photo_url: str | None = None
    # Candidate playlists, best quality first.
    playlists: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


def base_url_error(template: str) -> str | None:
    """Why ``template`` is not a usable base URL (``https://{host}``), or None when it is."""
    if not template.startswith(("http://", "https://")):
        return "expected an http(s) URL such as https://{host}"
    if template.count("{host}") != 1 or "{" in template.replace("{host}", ""):
        return "expected exactly one {host} placeholder and no other braces"
    if template.endswith("/"):
        return "no trailing slash: paths are appended as /vol..."
    return None


@dataclass(slots=True)
class _Inflight:
    task: asyncio.Task[MediaBundle]
    waiters: int = 0


class WbMediaSource:
    """Photos and video of a Wildberries article (see the module docstring)."""

    def __init__(
        self,
        *,
        route_map_url: str | None = ROUTE_MAP_URL,
        photo_base_url: str = "https://{host}",
        video_base_url: str = "https://{host}",
        route_map_file: Path | None = None,
        route_map_refresh: float = 6 * 3600,
        max_photos: int = 30,
        timeout: float = 30.0,
        rate_delay: float = 0.01,
        max_bytes: int = 50 * MB,
        max_video_bytes: int = 100 * MB,
        work_root: Path | None = None,
        ffmpeg_path: str = "ffmpeg",
        ffmpeg_timeout: float = 300.0,
        on_error: ErrorSink | None = None,
        retry_base: float = 0.5,
    ) -> None:
        for template in (photo_base_url, video_base_url):
            error = base_url_error(template)
            if error:
                raise ValueError(f"{template!r}: {error}")
        self.photo_base_url = photo_base_url
        self.video_base_url = video_base_url
        self.max_photos = max_photos
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_video_bytes = min(max_video_bytes, max_bytes)
        self.work_root = work_root
        self.ffmpeg_path = ffmpeg_path
        self.ffmpeg_timeout = ffmpeg_timeout
        self.client = CdnClient(timeout, rate_delay, retry_base)
        self.routes = Routes(
            self.client, route_map_url, route_map_file, route_map_refresh, on_error
        )
        self.articles: BoundedCache[int, ArticleMedia] = BoundedCache(
            ARTICLE_CACHE_SIZE, ARTICLE_CACHE_SECONDS
        )
        self._inflight: dict[int, _Inflight] = {}

    async def start(self) -> None:
        await self.routes.start()

    async def close(self) -> None:
        await self.routes.close()
        for entry in list(self._inflight.values()):
            entry.task.cancel()
        await self.client.close()

    # -- fetching, coalesced -------------------------------------------------------------

    async def fetch(self, nm_id: int) -> MediaBundle:
        """The article's files. Concurrent calls for one article share one download."""
        entry = self._inflight.get(nm_id)
        if entry is None:
            entry = _Inflight(asyncio.create_task(self._fetch(nm_id), name=f"wb-media-{nm_id}"))
            self._inflight[nm_id] = entry
            entry.task.add_done_callback(lambda _: self._forget(nm_id, entry))
        entry.waiters += 1
        try:
            shared_bundle = await asyncio.shield(entry.task)
        except asyncio.CancelledError:
            entry.waiters -= 1
            if entry.waiters == 0:  # nobody wants it any more
                if not entry.task.done():
                    entry.task.cancel()
                elif not entry.task.cancelled() and entry.task.exception() is None:
                    shared = entry.task.result()._shared
                    if shared is not None and shared.users == 0:
                        shared.release()
            raise
        entry.waiters -= 1
        if shared_bundle._shared is not None:
            shared_bundle._shared.acquire()
        # Each caller gets its own view; the files go with the last cleanup().
        return replace(
            shared_bundle,
            photos=list(shared_bundle.photos),
            too_large=list(shared_bundle.too_large),
            failed=list(shared_bundle.failed),
            problems=list(shared_bundle.problems),
        )

    def _forget(self, nm_id: int, entry: _Inflight) -> None:
        if self._inflight.get(nm_id) is entry:
            del self._inflight[nm_id]

    async def _fetch(self, nm_id: int) -> MediaBundle:
        media = self.articles.get(nm_id)
        if media is None:
            media = await self.resolve(nm_id)
            self.articles.put(nm_id, replace(media, problems=()))
        directory = self._new_directory(nm_id)
        bundle = MediaBundle(
            directory=directory, problems=list(media.problems), _shared=SharedDirectory(directory)
        )
        try:
            await self._fetch_photos(media, bundle)
            await self._fetch_video(media, bundle)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return bundle

    def _new_directory(self, nm_id: int) -> Path:
        if self.work_root is not None:
            self.work_root.mkdir(parents=True, exist_ok=True)
        # Private to the bot's user (mkdtemp: 0o700). A Local Bot API server reading these files
        # by path runs as the same uid (compose.yaml builds the image with BOT_UID=101, the
        # server's uid), so nobody else needs to look inside.
        return Path(tempfile.mkdtemp(prefix=f"{nm_id}-", dir=self.work_root))

    # -- resolving -----------------------------------------------------------------------

    def _photo_url(self, host: str, nm_id: int, n: int | str) -> str:
        path = PHOTO_PATH.format(vol=nm_id // 100_000, part=nm_id // 1000, nm_id=nm_id, n=n)
        return self.photo_base_url.replace("{host}", host) + path

    async def resolve(self, nm_id: int) -> ArticleMedia:
        """Find the article's host (confirmed by its card.json) and what it has."""
        if not 1 <= nm_id <= MAX_ARTICLE:
            raise ValueError(f"{nm_id} is not an article number")
        await self.routes.wait_loaded(self.timeout)
        vol, part = nm_id // 100_000, nm_id // 1000
        trusted = self.routes.expected_host(vol)
        problems: list[str] = []
        card: Card | None = None
        host: str | None = None
        malformed_on: str | None = None
        for candidate in self.routes.candidates(vol):
            url = self.photo_base_url.replace("{host}", candidate) + CARD_PATH.format(
                vol=vol, part=part, nm_id=nm_id
            )
            try:
                body = await self.client.fetch_small(
                    url, "card.json", retry_connect=candidate == trusted
                )
            except (MediaSourceError, aiohttp.ClientError, TimeoutError) as error:
                if candidate == trusted:
                    raise  # the CDN is in trouble: "try later" rather than "not found"
                # A probed host that does not exist or misbehaves is not this article's host.
                logger.debug("Probing %s for %s: %s", candidate, nm_id, error)
                continue
            if body is None:
                continue
            try:
                found = parse_card(body)
            except MalformedError as error:
                problems.append(f"card.json of {nm_id} on {candidate} malformed: {error}")
                if candidate == trusted:
                    malformed_on = candidate
                continue
            if found.nm_id != nm_id:
                problems.append(
                    f"card.json on {candidate} is of article {found.nm_id}, not {nm_id}: not used"
                )
                if candidate == trusted:  # a wrong host: none of its files may be sent
                    trusted = None
                continue
            card, host = found, candidate
            self.routes.remember(vol, candidate)
            break
        if card is not None and host is not None:
            count = min(card.photo_count, self.max_photos)
            photos = tuple(self._photo_url(host, nm_id, n) for n in range(1, count + 1))
            playlists = self._playlists(nm_id) if card.has_video else ()
            return ArticleMedia(nm_id, photos, playlists=playlists, problems=tuple(problems))
        # No card anywhere: probe photos on the host the route map names (unless it holds another
        # article's card), and the video.
        probe_host = malformed_on or trusted
        return ArticleMedia(
            nm_id,
            probe_photo_url=self._photo_url(probe_host, nm_id, "{n}") if probe_host else None,
            playlists=self._playlists(nm_id),
            problems=tuple(problems),
        )

    def _playlists(self, nm_id: int) -> tuple[str, ...]:
        vol = nm_id % 144
        host = self.routes.video_host(vol)
        if host is None:
            return ()
        base = self.video_base_url.replace("{host}", host)
        return tuple(
            base + VIDEO_PATH.format(vol=vol, part=nm_id // 10_000, nm_id=nm_id, quality=quality)
            for quality in VIDEO_QUALITIES
        )

    # -- photos --------------------------------------------------------------------------

    async def _fetch_photos(self, media: ArticleMedia, bundle: MediaBundle) -> None:
        if media.photo_urls:
            numbered = list(enumerate(media.photo_urls, start=1))
            for batch in chunked(numbered, PHOTO_CONCURRENCY):
                if not await self._photo_batch(batch, bundle, stop_at_404=False):
                    return
        elif media.probe_photo_url is not None:
            template = media.probe_photo_url
            numbers = range(1, self.max_photos + 1)
            for batch in chunked([(n, template.replace("{n}", str(n))) for n in numbers],
                                 PHOTO_CONCURRENCY):  # fmt: skip
                if not await self._photo_batch(batch, bundle, stop_at_404=True):
                    return

    async def _photo_batch(
        self, batch: list[tuple[int, str]], bundle: MediaBundle, *, stop_at_404: bool
    ) -> bool:
        """Download a batch; False when the rest is not worth asking for."""
        assert bundle.directory is not None
        results = await asyncio.gather(
            *(
                self.client.download(
                    url, bundle.directory / f"photo-{n:03d}.webp", f"photo {n}", self.max_bytes
                )
                for n, url in batch
            ),
            return_exceptions=True,
        )
        for (n, _), result in zip(batch, results, strict=True):
            if result is None:
                if stop_at_404:
                    return False
                bundle.failed.append(f"photo {n}: not found")
            elif isinstance(result, MediaTooLarge):
                bundle.too_large.append(f"photo {n}")
            elif isinstance(result, MediaFile):
                bundle.photos.append(result)
            elif isinstance(result, MediaSourceError | aiohttp.ClientError | TimeoutError):
                bundle.failed.append(f"photo {n}: {result or type(result).__name__}")
                return False
            else:
                raise result
        return True

    # -- video ---------------------------------------------------------------------------

    async def _fetch_video(self, media: ArticleMedia, bundle: MediaBundle) -> None:
        assert bundle.directory is not None
        too_large = False
        failures: list[str] = []
        for index, url in enumerate(media.playlists):
            quality = VIDEO_QUALITIES[index] if index < len(VIDEO_QUALITIES) else str(index)
            try:
                video = await self._hls_video(url, bundle.directory / f"hls-{index}", quality)
            except MediaTooLarge:
                too_large = True
                continue
            except MalformedError as error:
                bundle.problems.append(f"playlist {url} malformed: {error}")
                continue
            except (MediaSourceError, ConversionError, aiohttp.ClientError, TimeoutError) as error:
                logger.warning("Video %s not fetched: %s", url, error)
                failures.append(f"video {quality}: {error or type(error).__name__}")
                continue
            if video is not None:
                bundle.video = video
                return
        if too_large:
            bundle.too_large.append("video")
        elif failures:
            bundle.failed.extend(failures)

    async def _hls_video(self, url: str, directory: Path, quality: str) -> MediaFile | None:
        """One quality of the video as MP4; None if this quality does not exist."""
        body = await self.client.fetch_small(url, f"playlist {quality}")
        if body is None:
            return None
        template, segments = parse_media_playlist(body.decode("utf-8", errors="replace"), url)
        await asyncio.to_thread(directory.mkdir)
        try:
            dest = await self._remux(template, segments, directory, quality)
        finally:
            await asyncio.to_thread(shutil.rmtree, directory, True)
        return MediaFile(dest, (await asyncio.to_thread(dest.stat)).st_size)

    async def _remux(
        self, template: list[str], segments: list[str], directory: Path, quality: str
    ) -> Path:
        """Download the segments into ``directory`` and make ``video.mp4`` next to it."""
        # Raw segments may be a little larger than the MP4 they make; ffmpeg's -fs and the final
        # check hold the real limit.
        budget = self.max_video_bytes + self.max_video_bytes // 4
        names = []
        for index, segment in enumerate(segments):
            name = f"{index:05d}.ts"
            part = await self.client.download(segment, directory / name, f"segment {index}", budget)
            if part is None:
                raise MediaSourceError(f"segment {index} of {quality} not found")
            budget -= part.size
            names.append(name)
        local = "\n".join(
            names[int(line[1:])] if line.startswith("\0") else line for line in template
        )
        playlist = directory / "index.m3u8"
        await asyncio.to_thread(playlist.write_text, local + "\n")
        dest = directory.parent / "video.mp4"
        return await convert_hls_to_mp4(
            playlist, dest, self.ffmpeg_path, self.ffmpeg_timeout, max_bytes=self.max_video_bytes
        )
