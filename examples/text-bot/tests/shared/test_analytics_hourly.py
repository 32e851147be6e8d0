"""Hourly event counts (sql/10-analytics-hourly.sql): /stats' events by type from them equal the
count of the raw events for any period (real PostgreSQL), whether the analytics writer kept them,
a recompute made them or both, also for local days of a DST change in a zone at a half-hour
offset; a recompute running beside a writer loses and doubles nothing."""

import asyncio
import functools
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ecosystem_shared.analytics_store import EventRow, Row, write_batch
from ecosystem_shared.hourly import (
    RECENT_HOURS,
    events_by_type,
    refresh_recent_hours,
    roll_up_hours,
)
from ecosystem_shared.local_days import local_day_bounds
from ecosystem_shared.stats import _EVENTS_BY_TYPE, query_daily_stats

# St. John's: UTC-03:30, -02:30 in summer (from 9 March 2025, 02:00 local); Berlin: whole hours.
ZONES = ("America/St_Johns", "Europe/Berlin")
START = datetime(2025, 3, 8, tzinfo=UTC)
MINUTES = 3 * 24 * 60
BOTS = ("Alpha Bot", "Beta Bot")
TYPES = ("user_start", "error", "photo_sent")

Drawn = tuple[str, int | None, str, int, bool]  # bot, user, type, minute, written by the writer


def at(minute: int, second: int = 0) -> datetime:
    return START + timedelta(minutes=minute, seconds=second)


def row(event: Drawn) -> EventRow:
    bot, user, kind, minute, _ = event
    return (user, bot, kind, None, at(minute, minute % 60))


def expected(events: list[Drawn], start: datetime, end: datetime) -> dict[tuple[str, str], int]:
    return dict(Counter((e[0], e[2]) for e in events if start <= row(e)[4] < end))


def as_dict(rows: list[asyncpg.Record]) -> dict[tuple[str, str], int]:
    return {(r["bot_name"], r["event_type"]): r["n"] for r in rows if r["n"]}


def windows(zone: str, minute: int, length: int) -> list[tuple[datetime, datetime]]:
    """Local days around the DST change (23 hours on 9 March), the last 24 hours of a moment,
    a window shorter than an hour, and the whole range."""
    days = [local_day_bounds(START.date() + timedelta(days=n), zone) for n in range(3)]
    moment = at(minute, 17)
    return [*days, (moment - timedelta(hours=24), moment),
            (moment, moment + timedelta(minutes=length)), (START, at(MINUTES))]  # fmt: skip


async def clear(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "TRUNCATE shared.analytics_events, shared.users, shared.analytics_bot_users,"
        " shared.analytics_hourly_events, shared.analytics_hourly_coverage"
    )


@st.composite
def event_lists(draw: st.DrawFn) -> list[Drawn]:
    return draw(
        st.lists(
            st.tuples(
                st.sampled_from(BOTS),
                st.one_of(st.none(), st.integers(1, 5)),
                st.sampled_from(TYPES),
                st.integers(0, MINUTES - 1),
                st.booleans(),
            ),
            min_size=1,
            max_size=40,
        )
    )


@pytest.fixture
def conn(db_conn: asyncpg.Connection) -> asyncpg.Connection:
    return db_conn


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=event_lists(),
    batches=st.integers(1, 4),
    covered=st.integers(0, MINUTES),
    minute=st.integers(0, MINUTES),
    length=st.integers(1, 59),
)
@example(  # on both sides of St. John's 02:00 -> 03:00 (05:30 UTC), before any coverage
    events=[
        ("Alpha Bot", 1, "error", 29 * 60 + 29, True),
        ("Alpha Bot", 1, "error", 29 * 60 + 31, False),
    ],
    batches=1,
    covered=0,
    minute=29 * 60 + 30,
    length=59,
)
async def test_events_by_type_equal_the_raw_count(
    conn: asyncpg.Connection,
    events: list[Drawn],
    batches: int,
    covered: int,
    minute: int,
    length: int,
) -> None:
    await clear(conn)
    # Rows the writer stores (with their hourly counts), in a few batches; the others as an
    # import would, then a recompute from `covered` on makes the counts whole from there.
    written: list[Row] = [row(e) for e in events if e[4]]
    for n in range(batches):
        if written[n::batches]:
            await write_batch(conn, list(written[n::batches]), timeout=10)
    imported = [row(e) for e in events if not e[4]]
    await conn.executemany(
        "INSERT INTO shared.users (telegram_id, first_name) VALUES ($1, '') ON CONFLICT DO NOTHING",
        [(r[0],) for r in imported if r[0] is not None],
    )
    await conn.executemany(
        "INSERT INTO shared.analytics_events (telegram_id, bot_name, event_type, event_data,"
        " created_at) VALUES ($1, $2, $3, $4, $5)",
        imported,
    )
    for zone in ZONES:
        for start, end in windows(zone, minute, length):
            raw = as_dict(await conn.fetch(_EVENTS_BY_TYPE, start, end, None))
            assert raw == expected(events, start, end)
            if not imported:  # the writer's counts alone, nothing covered: all raw still
                assert as_dict(await events_by_type(conn, start, end)) == raw
    await roll_up_hours(conn, at(covered), now=at(MINUTES))
    await roll_up_hours(conn, at(covered), now=at(MINUTES))  # idempotent
    # The writer goes on, into covered hours and older ones.
    more: list[Row] = [row(e) for e in events]
    await write_batch(conn, more, timeout=10)
    events = events + events
    for zone in ZONES:
        for start, end in windows(zone, minute, length):
            want = expected(events, start, end)
            assert as_dict(await events_by_type(conn, start, end)) == want, (zone, start, end)
            for bot in BOTS:
                mine = as_dict(await events_by_type(conn, start, end, bot))
                assert mine == {k: v for k, v in want.items() if k[0] == bot}
            stats = await query_daily_stats(conn, start, end)
            counted = [b.starts + b.errors + sum(b.events.values()) for b in stats.bots.values()]
            assert sum(counted) == sum(want.values())


async def waits_for_commit(
    holder: asyncpg.Connection,
    hold: Callable[[], Awaitable[object]],
    waiter: Callable[[], Awaitable[object]],
) -> None:
    """``hold`` in an open transaction of ``holder``; ``waiter`` must wait until its commit."""
    transaction = holder.transaction()
    await transaction.start()
    await hold()
    task = asyncio.ensure_future(waiter())
    await asyncio.sleep(0.5)
    assert not task.done()
    await transaction.commit()
    await task


async def test_a_recompute_beside_a_writer_counts_each_batch_once(
    conn: asyncpg.Connection, database_url: str
) -> None:
    """A batch whose transaction has added its counts, and one that adds them while a
    recompute of their hour holds its lock: both counted once; a second recompute waits."""
    await clear(conn)
    hour = datetime(2025, 6, 1, 10, tzinfo=UTC)
    event: EventRow = (1, "Alpha Bot", "user_start", None, hour + timedelta(minutes=5))
    await write_batch(conn, [event], timeout=10)
    writer = await asyncpg.connect(database_url)
    recompute = await asyncpg.connect(database_url)

    async def recount_held() -> None:
        await recompute.execute("SELECT shared.analytics_rollup_hour($1)", hour)

    try:
        # 1. The writer's batch is in, uncommitted, when the recompute starts: it waits.
        await waits_for_commit(
            writer,
            lambda: write_batch(writer, [event, event], timeout=10),
            lambda: roll_up_hours(recompute, hour, now=hour),
        )
        # 2. The recompute holds the lock: the writer's counts wait for it, then land on it.
        await waits_for_commit(recompute, recount_held, lambda: write_batch(writer, [event], 10))
        # 3. Two recomputes of one hour (two bots starting): the second waits, then recounts.
        second = functools.partial(roll_up_hours, writer, hour, now=hour)
        await waits_for_commit(recompute, recount_held, second)
    finally:
        await writer.close()
        await recompute.close()
    counts = as_dict(await events_by_type(conn, hour, hour + timedelta(hours=1)))
    assert counts == {("Alpha Bot", "user_start"): 4}
    stored = await conn.fetchval("SELECT events FROM shared.analytics_hourly_events")
    assert stored == 4


async def test_recent_hours_are_filled_and_covered(conn: asyncpg.Connection) -> None:
    await clear(conn)
    now = datetime(2025, 6, 3, 12, 30, tzinfo=UTC)
    old = now - timedelta(hours=RECENT_HOURS + 5)
    await conn.execute("INSERT INTO shared.users (telegram_id, first_name) VALUES (1, '')")
    await conn.executemany(
        "INSERT INTO shared.analytics_events (telegram_id, bot_name, event_type, created_at)"
        " VALUES (1, 'Alpha Bot', 'error', $1)",
        [(old,), (now - timedelta(hours=3),), (now - timedelta(minutes=1),)],
    )
    assert await refresh_recent_hours(conn, now=now) == RECENT_HOURS + 1
    covered_from = await conn.fetchval("SELECT covered_from FROM shared.analytics_hourly_coverage")
    assert covered_from == datetime(2025, 6, 1, 12, tzinfo=UTC)
    assert await conn.fetchval("SELECT sum(events) FROM shared.analytics_hourly_events") == 2
    # Older hours were not filled (nobody reads them): a window reaching back reads them raw.
    got = as_dict(await events_by_type(conn, old - timedelta(hours=1), now))
    assert got == {("Alpha Bot", "error"): 3}
