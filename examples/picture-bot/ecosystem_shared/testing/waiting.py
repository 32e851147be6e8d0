"""Waiting helpers for process-level tests: poll until a condition holds or time runs out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

T = TypeVar("T")


async def wait_until(
    probe: Callable[[], Awaitable[T]],
    predicate: Callable[[T], bool] = bool,
    *,
    timeout: float = 10.0,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    """Return the first probe result that satisfies ``predicate``; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what}; last: {value!r}"
            )
        await asyncio.sleep(interval)


async def fetch(database_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def wait_for_rows(
    database_url: str, query: str, *args: Any, count: int = 1, timeout: float = 10.0
) -> list[asyncpg.Record]:
    """Poll ``query`` until it returns ``count`` rows or more (analytics are written in batches)."""

    async def probe() -> list[asyncpg.Record]:
        try:
            return await fetch(database_url, query, *args)
        except asyncpg.UndefinedTableError:
            return []  # the bot has not applied its migrations yet

    return await wait_until(
        probe, lambda rows: len(rows) >= count, timeout=timeout, what=f"{count} row(s) of {query!r}"
    )
