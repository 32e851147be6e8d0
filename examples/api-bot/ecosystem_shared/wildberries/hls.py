"""Videos: an HLS media playlist checked and parsed, its segments remuxed to MP4 by ffmpeg."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from urllib.parse import urljoin, urlsplit

from .errors import ConversionError, MalformedError, MediaTooLarge
from .files import discard

logger = logging.getLogger(__name__)

# Videos (wb-private-api src/Constants.js and src/Utils.js; SergeiKamalian/wb-media-donwloader
# src/entities/product/buildVideoPlaylistUrl.ts, 2026-08-17): vol = nm % 144, part = nm // 10000,
# https://videonme-basket-NN.wbbasket.ru/vol{vol}/part{part}/{nm}/hls/{quality}/index.m3u8, the
# segments named relative to the playlist (1.ts, 2.ts, ...). Live product cards link such URLs,
# e.g. videonme-basket-12.wbbasket.ru/vol137/part22557/225577433/hls/1440p/index.m3u8.
VIDEO_PATH = "/vol{vol}/part{part}/{nm_id}/hls/{quality}/index.m3u8"
# The web shop asks for 1440p; the downloader above falls back 1440p -> 1080p -> 720p.
VIDEO_QUALITIES = ("1440p", "1080p", "720p")
# An HLS stream of more segments than this is not a product video.
MAX_SEGMENTS = 5000


def parse_media_playlist(text: str, url: str) -> tuple[list[str], list[str]]:
    """The playlist's lines (segment lines replaced by their index) and the segment URLs.

    Only a plain media playlist of this host is accepted: no variants, keys or init sections
    (what we would have to fetch from elsewhere), every segment on the playlist's own host.
    """
    lines = text.splitlines()
    if not lines or lines[0].strip() != "#EXTM3U":
        raise MalformedError("not an M3U8 playlist")
    origin = urlsplit(url)[:2]
    template: list[str] = []
    segments: list[str] = []
    for raw in lines:
        line = raw.strip()
        if line.startswith(("#EXT-X-STREAM-INF", "#EXT-X-MAP", "#EXT-X-I-FRAME-STREAM-INF")):
            raise MalformedError(f"unsupported tag {line.split(':')[0]}")
        if line.startswith("#EXT-X-KEY") and "METHOD=NONE" not in line:
            raise MalformedError("encrypted segments")
        if line and not line.startswith("#"):
            segment = urljoin(url, line)
            if urlsplit(segment)[:2] != origin:
                raise MalformedError(f"segment on another host: {segment}")
            template.append(f"\0{len(segments)}")
            segments.append(segment)
        else:
            template.append(line)
    if not segments:
        raise MalformedError("no segments")
    if len(segments) > MAX_SEGMENTS:
        raise MalformedError(f"{len(segments)} segments")
    return template, segments


async def _run_ffmpeg(ffmpeg_path: str, args: list[str], timeout: float) -> None:
    try:
        process = await asyncio.create_subprocess_exec(
            ffmpeg_path,
            *args,
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


async def convert_hls_to_mp4(
    playlist: str | Path,
    dest: Path,
    ffmpeg_path: str,
    timeout: float,
    *,
    max_bytes: int | None = None,
) -> Path:
    """Remux a local HLS playlist into one MP4: stream copy, re-encoded only if copying fails."""
    source = str(playlist)
    # The segments were downloaded by us: ffmpeg may read local files only, whatever the
    # playlist names.
    head = ["-hide_banner", "-loglevel", "error", "-nostdin", "-y",
            "-protocol_whitelist", "file,crypto", "-i", source]  # fmt: skip
    # HLS carries AAC in ADTS framing; MP4 needs it without.
    copy = ["-c", "copy", "-bsf:a", "aac_adtstoasc"]
    encode = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "26", "-c:a", "aac"]
    tail = ["-movflags", "+faststart"]
    if max_bytes is not None:
        # ffmpeg stops writing past this size: the result is then too large, not a long download.
        tail += ["-fs", str(max_bytes + 1)]
    try:
        await _run_ffmpeg(ffmpeg_path, [*head, *copy, *tail, str(dest)], timeout)
    except ConversionError as error:
        if "ffmpeg exited" not in str(error):
            raise
        logger.info("Stream copy of %s failed (%s); re-encoding", source, error)
        await _run_ffmpeg(ffmpeg_path, [*head, *encode, *tail, str(dest)], timeout)
    size = (await asyncio.to_thread(dest.stat)).st_size
    if max_bytes is not None and size > max_bytes:
        await asyncio.to_thread(discard, dest)
        raise MediaTooLarge("the video", max_bytes)
    if size == 0:
        raise ConversionError("ffmpeg produced an empty file")
    return dest
