"""Per-user rate limit: one handled update per interval, one warning per window, rest dropped."""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

from aiogram import BaseMiddleware
from aiogram.exceptions import TelegramAPIError, TelegramNetworkError
from aiogram.types import CallbackQuery, Chat, Message, TelegramObject, User

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


def sender_key(data: dict[str, Any]) -> int | None:
    """Who to limit: the user, else the chat (channel posts, anonymous admins)."""
    user: User | None = data.get("event_from_user")
    if user is not None and not user.is_bot:
        return user.id
    chat: Chat | None = data.get("event_chat")
    return chat.id if chat is not None else None


class RateLimitMiddleware(BaseMiddleware):
    """Outer middleware for messages and callback queries."""

    def __init__(self, interval: float, warning_text: str, max_keys: int = 100_000) -> None:
        self.limiter = RateLimiter(interval, max_keys)
        self.warning_text = warning_text

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        key = sender_key(data)
        if key is None or self.limiter.interval <= 0:
            return await handler(event, data)
        verdict = self.limiter.check(key)
        if verdict is Verdict.ALLOW:
            return await handler(event, data)
        if verdict is Verdict.WARN:
            await self._warn(event, math.ceil(self.limiter.retry_in(key)))
        return None

    async def _warn(self, event: TelegramObject, seconds: int) -> None:
        text = self.warning_text.format(seconds=max(seconds, 1))
        try:
            if isinstance(event, CallbackQuery) or (
                isinstance(event, Message) and event.chat.type == "private"
            ):
                await event.answer(text)
        except (TelegramAPIError, TelegramNetworkError) as error:
            logger.info("Rate-limit warning not delivered: %s", error)
