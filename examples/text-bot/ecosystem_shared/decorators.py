"""Decorators for async callables: retry with backoff, and timing."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from ecosystem_shared.backoff import retry_backoff

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger(__name__)


def retry(
    max_attempts: int = 3,
    delay: float = 1.0,
    backoff: float = 2.0,
    exceptions: tuple[type[BaseException], ...] = (Exception,),
    max_delay: float | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Retry an async call on ``exceptions``, sleeping ``delay`` then ``delay*backoff``...

    The waits come from :func:`ecosystem_shared.backoff.retry_backoff`, capped at ``max_delay``
    (by default never reached). The last error is re-raised.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    cap = max_delay if max_delay is not None else delay * backoff**max_attempts
    retry_backoff(delay, cap, factor=backoff)  # bad numbers fail here, not at the first error

    def decorate(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            waits = retry_backoff(delay, cap, factor=backoff)
            for attempt in range(1, max_attempts + 1):
                try:
                    return await func(*args, **kwargs)
                except exceptions as error:
                    if attempt == max_attempts:
                        raise
                    wait = next(waits)
                    logger.warning(
                        "%s failed (%s), attempt %d/%d, retrying in %.1f s",
                        func.__qualname__,
                        type(error).__name__,
                        attempt,
                        max_attempts,
                        wait,
                    )
                    await asyncio.sleep(wait)
            raise AssertionError("unreachable")

        return wrapper

    return decorate


def timed(
    log: logging.Logger | None = None, level: int = logging.DEBUG
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Log how long each call of an async function took."""
    target = log or logger

    def decorate(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            try:
                return await func(*args, **kwargs)
            finally:
                elapsed = (time.perf_counter() - started) * 1000
                target.log(level, "%s took %.1f ms", func.__qualname__, elapsed)

        return wrapper

    return decorate
