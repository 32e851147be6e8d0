"""State shared by several processes of one bot (``REDIS_URL``): FSM, per-user locks, rate limits.

Webhook mode may run any number of instances behind a proxy, and any of them may receive the
next update of a user. With ``REDIS_URL`` set:

- FSM states and data live in Redis (aiogram's ``RedisStorage``); keys carry the bot id
  (``DefaultKeyBuilder(with_bot_id=True)``), so every bot of the ecosystem can share one Redis;
- one user's updates are handled one at a time across instances (``RedisEventIsolation``: a Redis
  lock per user key);
- the rate limiter's budget is kept in Redis (``ecosystem_shared.middlewares.rate_limit``).

Redis going away must not silence the bot: every Redis call falls back to the process's own
memory (states, a local lock, the local limiter), the outage is logged once and the recovery
once. Without ``REDIS_URL`` everything stays in memory, as in a single polling process.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

from aiogram.fsm.storage.base import (
    BaseEventIsolation,
    BaseStorage,
    DefaultKeyBuilder,
    StateType,
    StorageKey,
)
from aiogram.fsm.storage.redis import RedisEventIsolation, RedisStorage
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ecosystem_shared.fsm_memory import CompactEventIsolation, CompactMemoryStorage

__all__ = [
    "REDIS_ERRORS",
    "FallbackEventIsolation",
    "FallbackStorage",
    "RedisHealth",
    "SharedState",
    "connect_redis",
    "key_builder",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

# What a lost, refused or slow Redis raises (redis-py wraps most socket errors in RedisError).
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
# A per-user lock outlives a killed instance by this long at most (aiogram's default is 60 s).
LOCK_TIMEOUT_SECONDS = 30
# Socket timeouts: a Redis that hangs costs an update this long before the fallback answers.
REDIS_TIMEOUT_SECONDS = 2.0


def key_builder() -> DefaultKeyBuilder:
    """Keys ``fsm:<bot id>:<chat>:<user>:...``: bots sharing one Redis never see each other."""
    return DefaultKeyBuilder(with_bot_id=True)


def connect_redis(url: str) -> Redis:
    """A client that fails fast: short timeouts, one immediate retry (a pooled connection that
    died with a restarted Redis), no back-off (while Redis is away the fallback answers)."""
    client: Redis = Redis.from_url(
        url,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        health_check_interval=15,
        retry=Retry(NoBackoff(), 1),
    )
    return client


class RedisHealth:
    """Logs the first failure of an outage and the first success after it, nothing in between."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.down_since: float | None = None
        self.failures = 0

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, error: BaseException, what: str) -> None:
        self.failures += 1
        if self.down_since is None:
            self.down_since = self._clock()
            logger.error(
                "Redis unavailable (%s: %s): %s from this process's memory until it is back",
                type(error).__name__,
                error,
                what,
            )

    def succeeded(self) -> None:
        if self.down_since is not None:
            logger.warning(
                "Redis reachable again after %.1f s; shared state resumed",
                self._clock() - self.down_since,
            )
            self.down_since = None

    async def call(
        self, what: str, primary: Callable[[], Awaitable[T]], fallback: Callable[[], Awaitable[T]]
    ) -> T:
        """``primary()``; on a Redis error ``fallback()``, logged as above."""
        try:
            result = await primary()
        except REDIS_ERRORS as error:
            self.failed(error, what)
            return await fallback()
        self.succeeded()
        return result


class FallbackStorage(BaseStorage):
    """``RedisStorage`` that answers from memory while Redis is unreachable.

    States written during an outage stay in this process (a user in the middle of a dialogue
    may be asked again by another instance); nothing raises into the handlers.
    """

    def __init__(self, primary: BaseStorage, health: RedisHealth) -> None:
        self.primary = primary
        self.fallback = CompactMemoryStorage()
        self.health = health

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        await self.health.call(
            "FSM states",
            lambda: self.primary.set_state(key, state),
            lambda: self.fallback.set_state(key, state),
        )

    async def get_state(self, key: StorageKey) -> str | None:
        return await self.health.call(
            "FSM states", lambda: self.primary.get_state(key), lambda: self.fallback.get_state(key)
        )

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        await self.health.call(
            "FSM data",
            lambda: self.primary.set_data(key, data),
            lambda: self.fallback.set_data(key, data),
        )

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        return await self.health.call(
            "FSM data", lambda: self.primary.get_data(key), lambda: self.fallback.get_data(key)
        )

    async def close(self) -> None:
        await self.fallback.close()
        try:
            await self.primary.close()
        except REDIS_ERRORS as error:
            logger.info("Redis connection not closed cleanly: %s", error)


class FallbackEventIsolation(BaseEventIsolation):
    """``RedisEventIsolation`` (one update per user at a time across instances), or a lock of
    this process while Redis is unreachable."""

    def __init__(self, primary: BaseEventIsolation, health: RedisHealth) -> None:
        self.primary = primary
        self.fallback = CompactEventIsolation()
        self.health = health

    @asynccontextmanager
    async def lock(self, key: StorageKey) -> AsyncGenerator[None, None]:
        shared: AbstractAsyncContextManager[None] = self.primary.lock(key)
        try:
            await shared.__aenter__()
        except REDIS_ERRORS as error:
            self.health.failed(error, "per-user locks")
            async with self.fallback.lock(key):
                yield None
            return
        self.health.succeeded()
        try:
            yield None
        finally:
            try:
                await shared.__aexit__(None, None, None)
            except REDIS_ERRORS as error:  # the lock expires by itself (LOCK_TIMEOUT_SECONDS)
                self.health.failed(error, "per-user locks")

    async def close(self) -> None:
        await self.fallback.close()


class SharedState:
    """The dispatcher's ``storage`` and ``events_isolation`` over one Redis client."""

    def __init__(self, url: str) -> None:
        self.redis = connect_redis(url)
        self.health = RedisHealth()
        builder = key_builder()
        self.storage = FallbackStorage(RedisStorage(self.redis, key_builder=builder), self.health)
        self.events_isolation = FallbackEventIsolation(
            RedisEventIsolation(
                self.redis, key_builder=builder, lock_kwargs={"timeout": LOCK_TIMEOUT_SECONDS}
            ),
            self.health,
        )

    async def check(self) -> bool:
        """Ping at start: logs (and carries on) when Redis is not there yet."""
        try:
            await self.redis.ping()
        except REDIS_ERRORS as error:
            self.health.failed(error, "FSM, locks and rate limits")
            return False
        self.health.succeeded()
        return True

    async def close(self) -> None:
        await self.events_isolation.close()
        await self.storage.close()
