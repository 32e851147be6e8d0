"""HTTP to the CDN: GETs paced and retried with backoff on 429, 5xx and network errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from ecosystem_shared.backoff import retry_backoff

from .bundle import MediaFile
from .errors import MB, MediaSourceError, MediaTooLarge
from .files import discard

logger = logging.getLogger(__name__)

DOWNLOAD_CHUNK = 256 * 1024
# card.json, playlists and the route map are small; anything larger is not one of them.
SMALL_BODY_LIMIT = 2 * MB
# Retries of 429 and 5xx answers and of network errors.
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
ATTEMPTS = 4
MAX_RETRY_AFTER = 30.0


def _retry_after(header: str | None) -> float | None:
    """A Retry-After header in seconds (capped); None when absent or not a number."""
    if header is not None:
        with contextlib.suppress(ValueError):
            return min(max(float(header), 0.0), MAX_RETRY_AFTER)
    return None


class CdnClient:
    """GETs paced by ``rate_delay``, retried with backoff on 429, 5xx and network errors."""

    def __init__(self, timeout: float, rate_delay: float, retry_base: float = 0.5) -> None:
        self.rate_delay = rate_delay
        self.retry_base = retry_base
        self._next_request = 0.0
        self._pace_lock = asyncio.Lock()
        # No total timeout: a large video may take long; a stalled connection may not.
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)
        )

    async def close(self) -> None:
        await self._session.close()

    async def _pace(self) -> None:
        if self.rate_delay <= 0:
            return
        async with self._pace_lock:
            loop = asyncio.get_running_loop()
            wait = self._next_request - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._next_request = loop.time() + self.rate_delay

    @contextlib.asynccontextmanager
    async def get(
        self, url: str, *, retry_connect: bool = True
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The response to GET ``url``; ``retry_connect=False``: a host that cannot be reached
        (no such host when probing) fails at once instead of after the retries."""
        waits = retry_backoff(self.retry_base, MAX_RETRY_AFTER)
        for attempt in range(ATTEMPTS):
            last = attempt + 1 == ATTEMPTS
            await self._pace()
            try:
                response = await self._session.get(url)
            except (aiohttp.ClientError, TimeoutError) as error:
                if last or (not retry_connect and isinstance(error, aiohttp.ClientConnectorError)):
                    raise
                await asyncio.sleep(next(waits))
                continue
            if response.status in RETRIED_STATUSES and not last:
                wait = next(waits)  # the backoff grows whether or not the server names a wait
                asked = _retry_after(response.headers.get("Retry-After"))
                delay = wait if asked is None else asked
                response.release()
                logger.debug("HTTP %s for %s; retrying in %.2f s", response.status, url, delay)
                await asyncio.sleep(delay)
                continue
            try:
                yield response
            finally:
                response.release()
            return

    async def fetch_small(self, url: str, what: str, *, retry_connect: bool = True) -> bytes | None:
        """The body of a small document; None on 404."""
        async with self.get(url, retry_connect=retry_connect) as response:
            if response.status == 404:
                return None
            if response.status != 200:
                raise MediaSourceError(f"HTTP {response.status} for {what}")
            body = await response.content.read(SMALL_BODY_LIMIT + 1)
        if len(body) > SMALL_BODY_LIMIT:
            raise MediaSourceError(f"{what} is larger than {SMALL_BODY_LIMIT // MB} MB")
        return body

    async def download(self, url: str, dest: Path, what: str, max_bytes: int) -> MediaFile | None:
        """Stream ``url`` into ``dest``; None on 404; MediaTooLarge past ``max_bytes``."""
        async with self.get(url) as response:
            if response.status == 404:
                return None
            if response.status != 200:
                raise MediaSourceError(f"HTTP {response.status} for {what}")
            if response.content_length is not None and response.content_length > max_bytes:
                raise MediaTooLarge(what, max_bytes)
            size = 0
            try:
                with dest.open("wb") as out:
                    async for chunk in response.content.iter_chunked(DOWNLOAD_CHUNK):
                        size += len(chunk)
                        if size > max_bytes:
                            raise MediaTooLarge(what, max_bytes)
                        out.write(chunk)
            except BaseException:
                discard(dest)
                raise
        if size == 0:
            raise MediaSourceError(f"empty {what}")
        return MediaFile(dest, size)
