"""The Bot object: custom/local Bot API server and retries of failed requests."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import BaseRequestMiddleware, NextRequestMiddlewareType
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramNetworkError, TelegramRetryAfter, TelegramServerError
from aiogram.methods import AnswerCallbackQuery, GetUpdates, TelegramMethod
from aiogram.methods.base import TelegramType

from ecosystem_shared.backoff import retry_backoff

if TYPE_CHECKING:
    from aiogram.client.session.base import BaseSession

    from ecosystem_shared.config import SharedSettings

logger = logging.getLogger(__name__)

# Not retried: a late callback answer is useless (Telegram expires it), and polling has its own
# backoff in the dispatcher.
_NOT_RETRIED = (AnswerCallbackQuery, GetUpdates)
# Set by a caller that handles 429s and errors itself (the broadcast sender holds a whole job
# on a 429 instead of each send waiting on its own): RetryMiddleware lets its requests through.
NO_RETRIES: ContextVar[bool] = ContextVar("no_retries", default=False)


class RetryMiddleware(BaseRequestMiddleware):
    """Honours 429 ``retry_after``; backs off on 5xx and network errors; bounded attempts."""

    def __init__(
        self,
        max_attempts: int = 4,
        base_delay: float = 0.5,
        max_delay: float = 10.0,
        max_retry_after: float = 60.0,
    ) -> None:
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_retry_after = max_retry_after
        # Spread the retries of requests that failed together (seconds, standard deviation).
        self.jitter = base_delay / 10
        retry_backoff(base_delay, max_delay, jitter=self.jitter)  # bad numbers fail here
        # Told the seconds waited on a 429's retry_after, by method (the bot's metrics).
        self.on_retry_after: Callable[[str, float], None] | None = None

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Any:
        # a bool: no narrowing of `method`
        retried = not isinstance(method, _NOT_RETRIED) and not NO_RETRIES.get()
        if not retried:
            return await make_request(bot, method)
        attempt, waits = 1, retry_backoff(self.base_delay, self.max_delay, jitter=self.jitter)
        while True:
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as error:
                if attempt >= self.max_attempts or error.retry_after > self.max_retry_after:
                    raise
                delay = float(error.retry_after)
                if self.on_retry_after is not None:
                    self.on_retry_after(method.__api_method__, delay)
            except (TelegramServerError, TelegramNetworkError):
                if attempt >= self.max_attempts:
                    raise
                delay = next(waits)
            logger.warning(
                "%s failed (attempt %d/%d), retrying in %.1f s",
                type(method).__name__,
                attempt,
                self.max_attempts,
                delay,
            )
            await asyncio.sleep(delay)
            attempt += 1


class PollingWatch(BaseRequestMiddleware):
    """When Telegram last answered ``getUpdates``: the liveness file follows polling, so the
    container's health check fails when the bot stops receiving updates, not only when it dies."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_answer = clock()

    @property
    def seconds_since_answer(self) -> float:
        return self._clock() - self._last_answer

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Any:
        result = await make_request(bot, method)
        if isinstance(method, GetUpdates):
            self._last_answer = self._clock()
        return result


class TelegramSession(AiohttpSession):
    """aiogram's aiohttp session, minus a pause that plain HTTP does not need.

    aiogram's ``close()`` sleeps 250 ms after closing so that SSL connections finish closing
    (aiohttp's graceful-shutdown advice). A Local Bot API server on ``http://`` (and the test
    kit's fake) has no SSL connection to wait for: there the session closes at once.
    """

    async def close(self) -> None:
        if self.api.base.lower().startswith("https:"):
            await super().close()
        elif self._session is not None and not self._session.closed:
            await self._session.close()


def build_session(settings: SharedSettings) -> BaseSession:
    if settings.TELEGRAM_API_BASE_URL:
        api = TelegramAPIServer.from_base(
            settings.TELEGRAM_API_BASE_URL, is_local=settings.TELEGRAM_API_LOCAL
        )
        session = TelegramSession(api=api)
    else:
        session = TelegramSession()
    session.middleware(RetryMiddleware())
    return session


def build_bot(settings: SharedSettings) -> Bot:
    return Bot(settings.BOT_TOKEN.get_secret_value(), session=build_session(settings))


def local_file_reference(path: str) -> str:
    """How a Local Bot API server (``--local``) takes a file: by its absolute path."""
    return Path(path).resolve().as_uri()
