"""Client of the external HTTP API: one aiohttp session, retries on failure."""

from typing import Any

import aiohttp

from ecosystem_shared.decorators import retry

# Worth retrying: the network and the server's own failures, not our 4xx mistakes.
RETRIABLE = (aiohttp.ClientConnectionError, aiohttp.ServerTimeoutError, TimeoutError)


class ServerError(Exception):
    """The API answered 5xx."""


class ExternalApiClient:
    def __init__(self, base_url: str, api_key: str | None, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._session = aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
        )

    @retry(max_attempts=3, delay=0.5, exceptions=(*RETRIABLE, ServerError))
    async def fetch_data(self, user_id: int) -> Any:
        async with self._session.get(f"{self.base_url}/data/{user_id}") as response:
            if response.status >= 500:
                raise ServerError(f"HTTP {response.status}")
            response.raise_for_status()
            return await response.json()

    async def close(self) -> None:
        await self._session.close()
