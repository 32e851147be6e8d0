"""The bot as a process while its PostgreSQL goes away: users are answered, rows are not lost.

The bot runs against a private server that the test stops and starts. Each ``/start`` buffers
two analytics rows (the user and a ``user_start`` event), which is how the buffer is counted.
"""

import asyncio
from collections import Counter
from collections.abc import Mapping
from typing import Any

import asyncpg
import pytest

from ecosystem_shared.testing.fake_bot_api import FakeBotAPI
from ecosystem_shared.testing.postgres import PostgresServer
from ecosystem_shared.testing.telegram_fixtures import StartBot
from ecosystem_shared.testing.waiting import fetch, wait_until

pytestmark = pytest.mark.slow  # a bot process and a private server stopped and started

TIMEOUT = 30.0  # generous: the machine may be busy; nothing waits this long when all is well
FAST: dict[str, Any] = {
    "RATE_LIMIT_SECONDS": "0",
    "DB_RECONNECT_SECONDS": "0.5",
    "ANALYTICS_FLUSH_SECONDS": "0.1",
}

EventCounts = Counter[tuple[int, str]]


def first_name(user_id: int) -> str:
    return f"User{user_id}"


async def talk(fake_api: FakeBotAPI, starts: Mapping[int, int]) -> None:
    """Each user sends ``/start`` that many times and ``/help`` once; wait for every reply."""
    for user_id, count in starts.items():
        for _ in range(count):
            fake_api.push_message("/start", user_id=user_id, first_name=first_name(user_id))
        fake_api.push_message("/help", user_id=user_id)
    for user_id, count in starts.items():
        await fake_api.wait_for_calls("sendMessage", count + 1, TIMEOUT, chat_id=user_id)


async def event_counts(url: str) -> EventCounts:
    query = (
        "SELECT telegram_id, event_type, count(*) AS n"
        " FROM shared.analytics_events GROUP BY telegram_id, event_type"
    )
    try:
        rows = await fetch(url, query)
    except asyncpg.UndefinedTableError:  # the bot has not migrated yet
        return Counter()
    return Counter({(row["telegram_id"], row["event_type"]): row["n"] for row in rows})


async def users(url: str) -> dict[int, str]:
    rows = await fetch(url, "SELECT telegram_id, first_name FROM shared.users")
    return {row["telegram_id"]: row["first_name"] for row in rows}


def starts_of(*plans: Mapping[int, int]) -> EventCounts:
    """The ``user_start`` events the plans produce."""
    total: EventCounts = Counter()
    for plan in plans:
        total.update({(user_id, "user_start"): count for user_id, count in plan.items()})
    return total


async def wait_for_events(url: str, count: int) -> None:
    await wait_until(
        lambda: event_counts(url),
        lambda counts: counts.total() >= count,
        timeout=TIMEOUT,
        what=f"{count} analytics events",
    )


async def test_outages_before_and_during_the_run(
    fake_api: FakeBotAPI,
    bot_process_factory: StartBot,
    own_server: PostgresServer,
) -> None:
    """One process through two outages (starting a bot costs seconds): with the server down
    from the start, longer than its 10-row buffer holds; then mid-run, shorter than that."""
    await asyncio.to_thread(own_server.stop)
    bot = await bot_process_factory(DATABASE_URL=own_server.url, ANALYTICS_BUFFER_SIZE="10", **FAST)
    await bot.wait_for_output(r"Database .* is unavailable")

    # Down from the start: everyone is answered; rows are kept while they fit, then dropped.
    kept = {11: 1, 12: 2, 13: 2}  # 5 x /start: 10 rows, the buffer is full
    await talk(fake_api, kept)
    assert "dropped" not in bot.output
    lost = {14: 1, 15: 2}
    await talk(fake_api, lost)
    dropped = await bot.wait_for_output(r"Analytics: dropped (\d+) rows \(buffer full")
    assert int(dropped[1]) >= 1

    # The server comes up: the same process connects, migrates and writes what it kept.
    await asyncio.to_thread(own_server.start)
    await wait_for_events(own_server.url, starts_of(kept).total())
    after = {16: 1}  # and tracks new activity as usual
    await talk(fake_api, after)
    await wait_for_events(own_server.url, starts_of(kept, after).total())

    # Lost mid-run: a returning user, one whose rows were dropped and a new one (twice) are
    # answered; 4 x /start is 8 rows, which fit the buffer, so nothing may be lost this time.
    await asyncio.to_thread(own_server.stop)
    during = {11: 1, 14: 1, 17: 2}
    await talk(fake_api, during)
    await bot.wait_for_output(r"Lost the database")
    await asyncio.to_thread(own_server.start)
    expected = starts_of(kept, after, during)
    await wait_for_events(own_server.url, expected.total())  # written by the running process
    assert bot.returncode is None
    assert bot.output.count("Connected to the database") == 2  # no restart in between

    assert await bot.stop() == 0
    assert await event_counts(own_server.url) == expected  # exactly: nothing lost, nothing twice
    stored = kept | after | during
    assert await users(own_server.url) == {user_id: first_name(user_id) for user_id in stored}
