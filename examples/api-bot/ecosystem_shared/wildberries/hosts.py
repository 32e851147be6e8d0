"""Which host serves an article: live route map, its copy on disk, fallback table, probes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from .cache import BoundedCache
from .cdn_client import CdnClient
from .errors import MalformedError, MediaSourceError
from .files import write_atomically
from .routes import (
    FALLBACK_MEDIA,
    FALLBACK_VIDEO,
    RouteMaps,
    RouteTable,
    host_number,
    numbered_host,
    parse_route_map,
)

logger = logging.getLogger(__name__)

# Probing for a host: baskets around the expected one, then this many past the last known.
PROBE_NEIGHBOURS = 2
PROBE_AHEAD = 8
MAX_CANDIDATES = 16
# Hosts found per vol are remembered, at most this many.
VOL_MEMORY_SIZE = 4096

ErrorSink = Callable[[str], Awaitable[None]]


class Routes:
    """Hosts for an article: live route map, its copy on disk, the fallback table, probing."""

    def __init__(
        self,
        client: CdnClient,
        url: str | None,
        cache_file: Path | None,
        refresh_seconds: float,
        on_error: ErrorSink | None = None,
    ) -> None:
        self.client = client
        self.url = url
        self.cache_file = cache_file
        self.refresh_seconds = refresh_seconds
        self.on_error = on_error
        self.maps = RouteMaps(FALLBACK_MEDIA, FALLBACK_VIDEO)
        self.origin = "the fallback table"
        self.vol_hosts: BoundedCache[int, str] = BoundedCache(VOL_MEMORY_SIZE)
        self.loaded = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- loading -------------------------------------------------------------------------

    async def start(self) -> None:
        await self._load_copy()
        if self.url is None:
            self.loaded.set()
            return
        self._task = asyncio.create_task(self._refresh_forever(), name="wb-route-map")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_loaded(self, timeout: float) -> None:
        """The first attempt at the live map, or ``timeout``: what a first request waits for."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.loaded.wait(), timeout)

    async def _refresh_forever(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception:  # a bug here must not stop the refreshes
                logger.exception("WB route map refresh failed")
            finally:
                self.loaded.set()
            await asyncio.sleep(self.refresh_seconds)

    async def refresh(self) -> bool:
        """Fetch and install the live route map; on failure keep what we have."""
        assert self.url is not None
        try:
            body = await self.client.fetch_small(self.url, "the route map")
        except (MediaSourceError, aiohttp.ClientError, TimeoutError) as error:
            logger.warning("WB route map unavailable (%s); using %s", error, self.origin)
            return False
        if body is None:
            logger.warning("WB route map not found at %s; using %s", self.url, self.origin)
            return False
        try:
            maps = parse_route_map(json.loads(body))
        except (MalformedError, ValueError) as error:
            await self._report(f"WB route map malformed ({error}); using {self.origin}")
            return False
        self._install(maps, "the live route map")
        for problem in maps.problems:
            await self._report(f"WB route map partly malformed: {problem}")
        if self.cache_file is not None:
            try:
                await asyncio.to_thread(write_atomically, self.cache_file, body)
            except OSError as error:
                logger.warning("WB route map not saved to %s: %s", self.cache_file, error)
        return True

    async def _load_copy(self) -> None:
        if self.cache_file is None:
            return
        try:
            body = await asyncio.to_thread(self.cache_file.read_bytes)
        except FileNotFoundError:
            return
        except OSError as error:
            logger.warning("WB route map copy %s unreadable: %s", self.cache_file, error)
            return
        try:
            self._install(parse_route_map(json.loads(body)), f"the copy in {self.cache_file}")
        except (MalformedError, ValueError) as error:
            await self._report(f"WB route map copy {self.cache_file} malformed: {error}")

    def _install(self, maps: RouteMaps, origin: str) -> None:
        # A map missing one of its tables keeps the other from what we had.
        self.maps = RouteMaps(
            maps.media or self.maps.media, maps.video or self.maps.video, maps.media_hints
        )
        self.origin = origin
        logger.info("WB routes from %s", origin)

    async def _report(self, message: str) -> None:
        logger.warning("%s", message)
        if self.on_error is not None:
            try:
                await self.on_error(message)
            except Exception:  # the report must not take the bot down
                logger.exception("Could not record: %s", message)

    # -- resolving -----------------------------------------------------------------------

    def media_table(self) -> RouteTable:
        return self.maps.media or FALLBACK_MEDIA

    def video_host(self, vol: int) -> str | None:
        return (self.maps.video or FALLBACK_VIDEO).host_for(vol)

    def expected_host(self, vol: int) -> str | None:
        """Where a probe found this vol before, or where the route map says."""
        return self.vol_hosts.get(vol) or self.media_table().host_for(vol)

    def candidates(self, vol: int) -> list[str]:
        """Hosts worth asking for an article of ``vol``, most likely first (at most 16).

        The remembered and the mapped host; then the mapped basket's neighbours (or, past the
        table, the last basket); then baskets past the last known one; then hint hosts.
        """
        table = self.media_table()
        mapped = table.host_for(vol)
        last_host = table.routes[-1].host
        found = [host for host in (self.vol_hosts.get(vol), mapped) if host]
        numbers: list[int] = []
        number, last_number = host_number(mapped or last_host), host_number(last_host)
        if number is not None and mapped is not None:
            for step in range(1, PROBE_NEIGHBOURS + 1):
                numbers += [number + step, number - step]
        if last_number is not None:
            numbers += range(last_number + (mapped is not None), last_number + 1 + PROBE_AHEAD)
        template = mapped or last_host
        found += [host for host in (numbered_host(template, n) for n in numbers) if host]
        found += self.maps.media_hints
        return list(dict.fromkeys(found))[:MAX_CANDIDATES]

    def remember(self, vol: int, host: str) -> None:
        """A host confirmed for ``vol``: kept when the table would not have said so."""
        if host != self.media_table().host_for(vol) or self.vol_hosts.get(vol) is not None:
            self.vol_hosts.put(vol, host)
