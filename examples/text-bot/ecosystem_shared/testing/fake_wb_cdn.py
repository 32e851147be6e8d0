"""A fake Wildberries CDN for tests (aiohttp), built from what public projects show of the real one.

The facts and their sources are in ``ecosystem_shared/wildberries/`` (``routes``, ``card``,
``hls``): the route map JSON (``origin.mediabasket_route_map`` / ``origin.videonme_route_map``,
``method: "range"``), photos and ``info/ru/card.json`` at
``/vol{nm // 100000}/part{nm // 1000}/{nm}/...`` on basket hosts, videos at
``/vol{nm % 144}/part{nm // 10000}/{nm}/hls/{quality}/index.m3u8`` on videonme hosts with
segments named ``1.ts, 2.ts, ...`` next to the playlist.

One server stands in for every host: host ``H``, path ``P`` is ``GET {url}/H/P``, which is where
the bot asks with ``WB_PHOTO_BASE_URL = WB_VIDEO_BASE_URL = {url}/{host}``. A product is served
only by its own host and only at the paths of the real scheme, so a wrong host or a wrong path
is a 404 as on the real CDN.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from ecosystem_shared.wildberries.routes import RouteTable, parse_route_map

SAMPLE_ROUTE_MAP = Path(__file__).with_name("wb_route_map_sample.json")
ROUTE_MAP_HOST = "cdn.wbbasket.ru"
ROUTE_MAP_PATH = "api/v3/upstreams"

# Articles in early, middle and late ranges of the sample route map (vol = nm // 100000).
EARLY = 12_345_678  # vol 123: basket-01
MIDDLE = 485_117_625  # vol 4851: basket-26 (the old table said 27); a real product URL
LATE = 1_532_076_295  # vol 15320: basket-48; a real product URL
PAST = 1_900_012_345  # vol 19000: past the table's last range (vol 18821)

_CARD = re.compile(r"vol(\d+)/part(\d+)/(\d+)/info/ru/card\.json")
_PHOTO = re.compile(r"vol(\d+)/part(\d+)/(\d+)/images/big/(\d+)\.webp")
_HLS = re.compile(r"vol(\d+)/part(\d+)/(\d+)/hls/(\w+)/(index\.m3u8|\d+\.ts)")


def sample_route_map() -> dict[str, Any]:
    return dict(json.loads(SAMPLE_ROUTE_MAP.read_text(encoding="utf-8")))


def photo_bytes(host: str, nm_id: int, n: int, size: int = 2048) -> bytes:
    """A photo that says where it came from (the host is part of the bytes)."""
    head = f"{host}/{nm_id}/{n}:".encode()
    return head + b"\xff" * (size - len(head))


def make_hls(directory: Path, seconds: int = 2) -> Path:
    """A tiny real HLS stream (H.264 + AAC in MPEG-TS segments 1.ts, 2.ts...), made by ffmpeg."""
    directory.mkdir(parents=True, exist_ok=True)
    playlist = directory / "index.m3u8"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
         "-f", "lavfi", "-i", f"testsrc=duration={seconds}:size=160x120:rate=10",
         "-f", "lavfi", "-i", f"sine=duration={seconds}",
         "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest",
         "-f", "hls", "-hls_time", "1", "-hls_list_size", "0", "-start_number", "1",
         "-hls_segment_filename", str(directory / "%d.ts"), str(playlist)],
        check=True,
        timeout=60,
    )  # fmt: skip
    return playlist


@dataclass
class Product:
    """An article on the CDN: its photos on ``host``, its video in ``video_qualities``."""

    nm_id: int
    host: str
    photos: int = 0
    video_qualities: tuple[str, ...] = ()
    # The card.json body: None = built from the fields above, b"" = no card (404).
    card: bytes | None = None
    photo_size: int = 2048

    def card_body(self) -> bytes | None:
        if self.card is not None:
            return self.card or None
        return json.dumps(
            {
                "imt_id": self.nm_id // 3,
                "nm_id": self.nm_id,
                "imt_name": f"Product {self.nm_id}",
                "media": {"has_video": bool(self.video_qualities), "photo_count": self.photos},
            }
        ).encode()


@dataclass
class FakeWbCdn:
    hls_dir: Path | None = None
    # The route map: served as JSON, or ``route_map_body`` verbatim, or ``route_map_status``.
    route_map: dict[str, Any] = field(default_factory=sample_route_map)
    route_map_body: bytes | None = None
    route_map_status: int = 200
    products: dict[int, Product] = field(default_factory=dict)
    # A playlist other than the real one, per (nm_id, quality).
    playlists: dict[tuple[int, str], str] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    url: str = ""
    _failures: dict[str, deque[int]] = field(default_factory=lambda: defaultdict(deque))

    # -- set-up ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """For WB_PHOTO_BASE_URL and WB_VIDEO_BASE_URL."""
        return self.url + "/{host}"

    @property
    def route_map_url(self) -> str:
        return f"{self.url}/{ROUTE_MAP_HOST}/{ROUTE_MAP_PATH}"

    def mapped_host(self, nm_id: int) -> str:
        """Where the sample route map puts an article's photos."""
        table = parse_route_map(sample_route_map()).media
        assert isinstance(table, RouteTable)
        host = table.host_for(nm_id // 100_000)
        assert host is not None, f"{nm_id} is past the sample route map"
        return host

    def add(self, nm_id: int, *, host: str | None = None, **fields: Any) -> Product:
        product = Product(nm_id, host or self.mapped_host(nm_id), **fields)
        self.products[nm_id] = product
        return product

    def fail_next(self, path_part: str, *statuses: int) -> None:
        """The next requests whose path contains ``path_part`` get these statuses, in order."""
        self._failures[path_part].extend(statuses)

    def requested(self, part: str) -> list[str]:
        return [path for path in self.requests if part in path]

    # -- serving --------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        host, path = request.match_info["host"], request.match_info["path"]
        self.requests.append(f"{host}/{path}")
        for part, statuses in self._failures.items():
            if statuses and part in f"{host}/{path}":
                return web.Response(status=statuses.popleft())
        if host == ROUTE_MAP_HOST and path == ROUTE_MAP_PATH:
            return self._route_map()
        if match := _CARD.fullmatch(path):
            product = self._photo_product(host, match)
            body = product.card_body() if product else None
            return web.Response(body=body, content_type="application/json") if body else _404()
        if match := _PHOTO.fullmatch(path):
            product, n = self._photo_product(host, match), int(match[4])
            if product is None or not 1 <= n <= product.photos:
                return _404()
            body = photo_bytes(host, product.nm_id, n, product.photo_size)
            return web.Response(body=body, content_type="image/webp")
        if match := _HLS.fullmatch(path):
            return self._video(host, match)
        return _404()

    def _route_map(self) -> web.Response:
        if self.route_map_status != 200:
            return web.Response(status=self.route_map_status)
        body = self.route_map_body or json.dumps(self.route_map).encode()
        return web.Response(body=body, content_type="application/json")

    def _photo_product(self, host: str, match: re.Match[str]) -> Product | None:
        vol, part, nm_id = map(int, match.groups()[:3])
        product = self.products.get(nm_id)
        if product is None or product.host != host:
            return None
        return product if (vol, part) == (nm_id // 100_000, nm_id // 1000) else None

    def _video(self, host: str, match: re.Match[str]) -> web.StreamResponse:
        vol, part, nm_id = map(int, match.groups()[:3])
        quality, name = match[4], match[5]
        product = self.products.get(nm_id)
        video_host = f"videonme-basket-{vol // 12 + 1:02d}.wbbasket.ru"
        if (
            product is None
            or quality not in product.video_qualities
            or (vol, part, host) != (nm_id % 144, nm_id // 10_000, video_host)
            or self.hls_dir is None
        ):
            return _404()
        if name == "index.m3u8" and (nm_id, quality) in self.playlists:
            return web.Response(text=self.playlists[nm_id, quality])
        file = self.hls_dir / name
        return web.FileResponse(file) if file.is_file() else _404()


def _404() -> web.Response:
    return web.Response(status=404)


@asynccontextmanager
async def serve(cdn: FakeWbCdn) -> AsyncIterator[FakeWbCdn]:
    app = web.Application()
    app.router.add_get("/{host}/{path:.*}", cdn.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    cdn.url = f"http://127.0.0.1:{port}"
    try:
        yield cdn
    finally:
        await runner.cleanup()
