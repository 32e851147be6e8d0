"""What a media file holds, read with ffmpeg alone: the dev extra's imageio-ffmpeg ships ffmpeg
without ffprobe, and the tests must run where that is the only ffmpeg (binaries.py)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

__all__ = ["stream_codecs"]

# `ffmpeg -i FILE` describes each stream on stderr, e.g.
#   Stream #0:0[0x1](und): Video: h264 (High) (avc1 / 0x31637661), yuv420p, ...
#   Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, ...
# where the word after the kind is the codec's short name, as ffprobe's codec_name says it.
_STREAM = re.compile(r"^\s*Stream #\d+:\d+\S*: (?:Video|Audio|Subtitle|Data|Attachment): (\w+)")


def stream_codecs(path: Path, ffmpeg: str = "ffmpeg") -> list[str]:
    """Sorted codec names of the streams in ``path`` (``["aac", "h264"]`` for a usual MP4)."""
    probe = subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-i", str(path)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    # ffmpeg exits 1 here ("At least one output file must be specified"): the description is all
    # we asked for. A file it cannot read has no stream lines and says why.
    found = sorted(m.group(1) for line in probe.stderr.splitlines() if (m := _STREAM.match(line)))
    if not found:
        raise ValueError(f"ffmpeg found no stream in {path}: {probe.stderr.strip()[-500:]}")
    return found
