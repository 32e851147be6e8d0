"""Per-user rate limit: one handled update per interval, one warning per window, rest dropped.

One process keeps the windows in memory (:class:`RateLimiter`). Several instances of a bot behind
a proxy share them in Redis (:class:`RedisRateLimiter`, ``REDIS_URL``), so a user's limit holds
whichever instance receives the update; while Redis is unreachable each instance falls back to
its own memory (the limit then holds per instance) and says so in the log.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import TYPE_CHECKING, Any

from aiogram import BaseMiddleware
from aiogram.exceptions import TelegramAPIError, TelegramNetworkError
from aiogram.types import CallbackQuery, Chat, Message, TelegramObject, User

if TYPE_CHECKING:  # redis is imported only by bots that set REDIS_URL
    from redis.asyncio import Redis

    from ecosystem_shared.shared_state import RedisHealth

logger = logging.getLogger(__name__)


class Verdict(Enum):
    ALLOW = "allow"
    WARN = "warn"
    DROP = "drop"


class RateLimiter:
    """O(1) per check; memory bounded by ``max_keys`` and by who was active in the last interval.

    Entries are kept in window-start order, so expired ones are always at the front and are
    pruned as new checks arrive. A value is the window start; negative once the user was warned
    (monotonic clock values are positive), which keeps an entry to one float.
    """

    def __init__(
        self,
        interval: float,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._clock = clock
        self._windows: OrderedDict[int, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._windows)

    def check(self, key: int) -> Verdict:
        now = self._clock()
        self._prune(now)
        start = self._windows.get(key)
        if start is None or now - abs(start) >= self.interval:
            self._windows[key] = now
            self._windows.move_to_end(key)
            if len(self._windows) > self.max_keys:
                self._windows.popitem(last=False)
            return Verdict.ALLOW
        if start > 0:
            self._windows[key] = -start
            return Verdict.WARN
        return Verdict.DROP

    def retry_in(self, key: int) -> float:
        start = self._windows.get(key)
        if start is None:
            return 0.0
        return max(0.0, self.interval - (self._clock() - abs(start)))

    def _prune(self, now: float) -> None:
        windows = self._windows
        while windows:
            key, start = next(iter(windows.items()))
            if now - abs(start) < self.interval:
                return
            del windows[key]


# The same rule as RateLimiter.check, atomically in Redis with Redis's clock (every instance
# agrees on time). The value is the window start, negated once the user was warned; it expires
# with the window, so idle users cost nothing.
_CHECK_SCRIPT = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local interval = tonumber(ARGV[1])
local ttl = math.ceil(interval * 1000)
local stored = redis.call('GET', KEYS[1])
if not stored or t - math.abs(tonumber(stored)) >= interval then
  redis.call('SET', KEYS[1], string.format('%.6f', t), 'PX', ttl)
  return {'allow', '0'}
end
local start = tonumber(stored)
local retry = string.format('%.3f', interval - (t - math.abs(start)))
if start > 0 then
  redis.call('SET', KEYS[1], string.format('%.6f', -start), 'KEEPTTL')
  return {'warn', retry}
end
return {'drop', retry}
"""


class RedisRateLimiter:
    """:class:`RateLimiter`'s rule over Redis: one budget per user for all instances of a bot."""

    def __init__(self, redis: Redis, interval: float, prefix: str = "ratelimit") -> None:
        self.interval = interval
        self.prefix = prefix
        self._script = redis.register_script(_CHECK_SCRIPT)

    async def check(self, bot_id: int, key: int) -> tuple[Verdict, float]:
        """The verdict and the seconds until the user's next update is handled."""
        verdict, retry = await self._script(
            keys=[f"{self.prefix}:{bot_id}:{key}"], args=[repr(self.interval)]
        )
        text = verdict.decode() if isinstance(verdict, bytes) else str(verdict)
        return Verdict(text), float(retry)


def sender_key(data: dict[str, Any]) -> int | None:
    """Who to limit: the user, else the chat (channel posts, anonymous admins)."""
    user: User | None = data.get("event_from_user")
    if user is not None and not user.is_bot:
        return user.id
    chat: Chat | None = data.get("event_chat")
    return chat.id if chat is not None else None


class RateLimitMiddleware(BaseMiddleware):
    """Outer middleware for messages and callback queries."""

    def __init__(
        self,
        interval: float,
        warning_text: str,
        max_keys: int = 100_000,
        *,
        shared: RedisRateLimiter | None = None,
        health: RedisHealth | None = None,
    ) -> None:
        self.limiter = RateLimiter(interval, max_keys)
        self.warning_text = warning_text
        self.shared = shared
        self.health = health
        self.on_throttled: Callable[[], None] | None = None  # the bot's metrics count them

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        key = sender_key(data)
        if key is None or self.limiter.interval <= 0:
            return await handler(event, data)
        verdict, retry_in = await self._check(data, key)
        if verdict is Verdict.ALLOW:
            return await handler(event, data)
        if self.on_throttled is not None:
            self.on_throttled()
        if verdict is Verdict.WARN:
            await self._warn(event, math.ceil(retry_in))
        return None

    async def _check(self, data: dict[str, Any], key: int) -> tuple[Verdict, float]:
        shared, health, bot = self.shared, self.health, data.get("bot")
        if shared is None or health is None or bot is None:
            return self._check_locally(key)
        return await health.call(
            "rate limits",
            lambda: shared.check(bot.id, key),
            lambda: self._check_locally_async(key),
        )

    def _check_locally(self, key: int) -> tuple[Verdict, float]:
        verdict = self.limiter.check(key)
        return verdict, self.limiter.retry_in(key)

    async def _check_locally_async(self, key: int) -> tuple[Verdict, float]:
        return self._check_locally(key)

    async def _warn(self, event: TelegramObject, seconds: int) -> None:
        text = self.warning_text.format(seconds=max(seconds, 1))
        try:
            if isinstance(event, CallbackQuery) or (
                isinstance(event, Message) and event.chat.type == "private"
            ):
                await event.answer(text)
        except (TelegramAPIError, TelegramNetworkError) as error:
            logger.info("Rate-limit warning not delivered: %s", error)
