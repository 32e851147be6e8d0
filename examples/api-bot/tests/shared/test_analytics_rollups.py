"""Daily rollups equal the figures computed from the raw events (real PostgreSQL), also on the
days a DST change makes 23 or 25 hours long; the digest, the chart and the operator commands
read them."""

import os
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import pytz
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ecosystem_shared.local_days import local_day_bounds
from ecosystem_shared.rollups import catch_up_first_sights, rebuild, roll_up_finished_days
from ecosystem_shared.stats import query_chart_data, query_daily_stats, query_day_stats

ZONE = "Europe/Berlin"
TZ = pytz.timezone(ZONE)
BOTS = ("Alpha Bot", "Beta Bot", "Gamma Bot")
TYPES = ("user_start", "error", "photo_sent", "command_used", "order_paid")
# Four local days around each DST change of 2025 in Berlin (30 March: 23 h, 26 October: 25 h).
WINDOWS = (datetime(2025, 3, 29), datetime(2025, 10, 25))
HOURS = 4 * 24


@dataclass(frozen=True)
class Event:
    bot: str
    user: int | None
    kind: str
    count: int | None
    at: datetime  # UTC


def local_start(window: datetime) -> datetime:
    return TZ.localize(window).astimezone(UTC)


@st.composite
def events(draw: st.DrawFn) -> list[Event]:
    start = local_start(draw(st.sampled_from(WINDOWS)))
    drawn = draw(
        st.lists(
            st.tuples(
                st.sampled_from(BOTS),
                st.one_of(st.none(), st.integers(1, 8)),
                st.sampled_from(TYPES),
                st.one_of(st.none(), st.integers(-2, 5)),
                st.integers(0, HOURS * 60 - 1),  # minutes after the window's start
            ),
            min_size=1,
            max_size=40,
        )
    )
    return [
        Event(bot, user, kind, count, start + timedelta(minutes=minute))
        for bot, user, kind, count, minute in drawn
    ]


def boundary_events() -> list[Event]:
    """Just before and after local midnight on both sides of the spring DST change."""
    moments = [
        TZ.localize(datetime(2025, 3, 29, 23, 59)),
        TZ.localize(datetime(2025, 3, 30, 0, 0)),
        TZ.localize(datetime(2025, 3, 30, 3, 0)),  # right after 02:00 became 03:00
        TZ.localize(datetime(2025, 3, 30, 23, 59)),
        TZ.localize(datetime(2025, 3, 31, 0, 0)),
    ]
    return [
        Event(BOTS[i % 2], 1 + i % 3, TYPES[i % len(TYPES)], i, moment.astimezone(UTC))
        for i, moment in enumerate(moments)
    ]


def quantity(count: int | None) -> int:
    return max(count, 0) if count is not None else 1


def first_sights(events: list[Event]) -> dict[tuple[int, str], datetime]:
    """(user, bot) -> the bot's first event of the user."""
    found: dict[tuple[int, str], datetime] = {}
    for e in events:
        if e.user is not None:
            found[(e.user, e.bot)] = min(found.get((e.user, e.bot), e.at), e.at)
    return found


def expected_rollups(
    events: list[Event],
) -> tuple[dict[tuple[date, str, str], tuple[int, int]], dict[tuple[date, str], tuple[int, ...]]]:
    """From the raw events, in Python: what the rollups must hold."""

    def day(moment: datetime) -> date:
        return moment.astimezone(TZ).date()

    by_type: dict[tuple[date, str, str], list[int]] = defaultdict(lambda: [0, 0])
    active: dict[tuple[date, str], set[int]] = defaultdict(set)
    first_in_bot = first_sights(events)
    for e in events:
        counts = by_type[(day(e.at), e.bot, e.kind)]
        counts[0] += 1
        counts[1] += quantity(e.count)
        ids = active[(day(e.at), e.bot)]  # a row even without known users
        if e.user is not None:
            ids.add(e.user)
    users: dict[tuple[date, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for (d, bot), ids in active.items():
        users[(d, bot)][0] = len(ids)
    for (_, bot), first in first_in_bot.items():
        users[(day(first), bot)][1] += 1
    first_bot: dict[int, tuple[datetime, str]] = {}
    for (user, bot), first in first_in_bot.items():
        first_bot[user] = min(first_bot.get(user, (first, bot)), (first, bot))
    for first, bot in first_bot.values():
        users[(day(first), bot)][2] += 1
    return (
        {key: (n, q) for key, (n, q) in by_type.items()},
        {key: tuple(v) for key, v in users.items() if any(v)},
    )


async def store(conn: asyncpg.Connection, events: list[Event], main: dict[str, list[str]]) -> None:
    await conn.execute(
        "TRUNCATE shared.analytics_events, shared.users, shared.analytics_bot_users,"
        " shared.analytics_rollup_days, shared.analytics_daily_events,"
        " shared.analytics_daily_bots, shared.analytics_bots, shared.analytics_hourly_events,"
        " shared.analytics_hourly_coverage"
    )
    firsts: dict[int, datetime] = {}
    for e in events:
        if e.user is not None:
            firsts[e.user] = min(firsts.get(e.user, e.at), e.at)
    await conn.executemany(
        "INSERT INTO shared.users (telegram_id, first_name, first_seen, last_seen)"
        " VALUES ($1, 'U', $2, $2)",
        list(firsts.items()),
    )
    await conn.executemany(
        "INSERT INTO shared.analytics_events (telegram_id, bot_name, event_type, event_data,"
        " created_at) VALUES ($1, $2, $3, $4, $5)",
        [
            (e.user, e.bot, e.kind, None if e.count is None else {"count": e.count}, e.at)
            for e in events
        ],
    )
    await conn.executemany(
        "INSERT INTO shared.analytics_bots (bot_name, main_events) VALUES ($1, $2)",
        list(main.items()),
    )


async def read_rollups(
    conn: asyncpg.Connection,
) -> tuple[dict[tuple[date, str, str], tuple[int, int]], dict[tuple[date, str], tuple[int, ...]]]:
    by_type = {
        (r["day"], r["bot_name"], r["event_type"]): (r["events"], r["quantity"])
        for r in await conn.fetch(
            "SELECT * FROM shared.analytics_daily_events WHERE zone = $1", ZONE
        )
    }
    users = {
        (r["day"], r["bot_name"]): (r["active_users"], r["new_to_bot"], r["new_to_ecosystem"])
        for r in await conn.fetch("SELECT * FROM shared.analytics_daily_bots WHERE zone = $1", ZONE)
    }
    return by_type, {key: value for key, value in users.items() if any(value)}


@pytest.fixture
def conn(db_conn: asyncpg.Connection) -> asyncpg.Connection:
    return db_conn  # the test kit's connection, under the name these tests use


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    events=events(),
    main=st.dictionaries(st.sampled_from(BOTS), st.lists(st.sampled_from(TYPES), max_size=2)),
)
@example(events=boundary_events(), main={})
async def test_rollups_equal_the_raw_figures(
    conn: asyncpg.Connection, events: list[Event], main: dict[str, list[str]]
) -> None:
    await store(conn, events, main)
    now = max(e.at for e in events) + timedelta(days=2)
    days = await roll_up_finished_days(conn, ZONE, now=now)
    first = min(e.at for e in events).astimezone(TZ).date()
    assert days == [first + timedelta(days=n) for n in range(len(days))]
    assert days[-1] == now.astimezone(TZ).date() - timedelta(days=1)
    assert await read_rollups(conn) == expected_rollups(events)

    # The digest's figures from the rollups equal those the raw events give for the same bounds.
    for day in days:
        rolled = await query_day_stats(conn, day, ZONE)
        raw = await query_daily_stats(conn, rolled.period_start, rolled.period_end)
        assert (rolled.new_users, rolled.bots) == (raw.new_users, raw.bots), day
        hours = (rolled.period_end - rolled.period_start).total_seconds() / 3600
        assert hours == {date(2025, 3, 30): 23, date(2025, 10, 26): 25}.get(day, 24)

    # The chart reads rollups; without them (deleted here) it reads the events: same series.
    end = TZ.localize(datetime.combine(days[-1] + timedelta(days=1), datetime.min.time()))
    from_rollups = await query_chart_data(conn, end, ZONE)
    await conn.execute("DELETE FROM shared.analytics_rollup_days")
    from_events = await query_chart_data(conn, end, ZONE)
    assert from_rollups.bots == from_events.bots
    assert sum(sum(series.main_events) for series in from_rollups.bots.values()) == sum(
        quantity(e.count)
        for e in events
        if (e.kind in main[e.bot] if main.get(e.bot) else e.kind not in ("user_start", "error"))
    )

    # Idempotent and recomputable: a rebuild gives the same rows.
    rebuilt = await rebuild(conn, ZONE, days[0], now=now)
    assert rebuilt == days
    assert await read_rollups(conn) == expected_rollups(events)

    # /stats: any period, with rollups covering all of it, part of it, or none.
    first_at, last_at = min(e.at for e in events), max(e.at for e in events)
    middle = first_at + (last_at - first_at) / 2
    firsts = first_sights(events)
    for rolled_until in (now, middle, None):
        await conn.execute(
            "TRUNCATE shared.analytics_bot_users, shared.analytics_rollup_days,"
            " shared.analytics_daily_events, shared.analytics_daily_bots"
        )
        if rolled_until is not None:
            await roll_up_finished_days(conn, ZONE, now=rolled_until)
        await catch_up_first_sights(conn)  # the writer's share, for rows inserted here
        for start in (middle - timedelta(hours=24), middle - timedelta(hours=1), first_at):
            end = last_at + timedelta(seconds=1)
            got = await query_daily_stats(conn, start, end)
            new = Counter(bot for (_, bot), first in firsts.items() if start <= first < end)
            assert {name: bot.new_users for name, bot in got.bots.items() if bot.new_users} == (
                dict(new)
            ), (rolled_until, start)


async def test_late_rows_and_rebuild(conn: asyncpg.Connection) -> None:
    day = date(2025, 3, 30)
    noon = TZ.localize(datetime(2025, 3, 30, 12)).astimezone(UTC)
    await store(conn, [Event("Alpha Bot", 1, "user_start", None, noon)], {})
    now = noon + timedelta(days=1)
    assert await roll_up_finished_days(conn, ZONE, now=now) == [day]
    assert await roll_up_finished_days(conn, ZONE, now=now) == []  # done: not again
    # A bulk import into a rolled-up day: `stats rebuild` brings the rollup up to date.
    await conn.execute(
        "INSERT INTO shared.users (telegram_id, first_name, first_seen) VALUES (2, 'I', $1)", noon
    )
    await conn.execute(
        "INSERT INTO shared.analytics_events (telegram_id, bot_name, event_type, created_at)"
        " VALUES (2, 'Alpha Bot', 'user_start', $1)",
        noon,
    )
    assert (await read_rollups(conn))[1][(day, "Alpha Bot")] == (1, 1, 1)
    await rebuild(conn, ZONE, day, now=now)
    assert (await read_rollups(conn))[1][(day, "Alpha Bot")] == (2, 2, 2)


def run_module(module: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
        check=False,
    )


async def test_rebuild_and_preview_commands(
    conn: asyncpg.Connection, database_url: str, tmp_path: Path
) -> None:
    events = boundary_events()
    await store(conn, events, {"Alpha Bot": ["photo_sent"]})
    env = {"DATABASE_URL": database_url, "DIGEST_TIMEZONE": ZONE, "LANGUAGE": "en"}
    rebuilt = run_module("ecosystem_shared.stats", "rebuild", "--since", "2025-03-29", env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.startswith("rebuilt ") and "(2025-03-29 to " in rebuilt.stdout
    rolled = await conn.fetchval("SELECT count(*) FROM shared.analytics_rollup_days")
    assert rolled > 3
    # And the hourly counts, from the local start of --since to now: whole, equal to the events.
    assert rebuilt.stdout.rstrip().endswith(" hours")
    since = local_day_bounds(date(2025, 3, 29), ZONE)[0]
    assert await conn.fetchval("SELECT covered_from FROM shared.analytics_hourly_coverage") == since
    hourly = await conn.fetchval("SELECT sum(events) FROM shared.analytics_hourly_events")
    assert hourly == len(events)

    chart = tmp_path / "chart.png"
    args = ["--preview", "--day", "2025-03-31", "--chart", str(chart)]
    preview = run_module("ecosystem_shared.digest", *args, env=env)
    assert preview.returncode == 0, preview.stderr
    stats = await query_day_stats(conn, date(2025, 3, 30), ZONE)
    assert "2025-03-29 23:00 – 2025-03-30 22:00 UTC" in preview.stdout  # 23 hours
    for name, bot in stats.bots.items():
        assert f"{name}: new {bot.new_users}, /start {bot.starts}, errors {bot.errors}" in (
            preview.stdout
        )
    assert chart.read_bytes().startswith(b"\x89PNG") and f"chart: {chart}" in preview.stdout
    assert await conn.fetchval("SELECT count(*) FROM shared.digest_runs") == 0  # nothing sent

    bad = run_module("ecosystem_shared.digest", "--preview", "--day", "31.03.2025", env=env)
    assert bad.returncode == 2 and "expected a day as YYYY-MM-DD" in bad.stderr
    no_db = run_module("ecosystem_shared.stats", "rebuild", "--since", "2025-03-29",
                       env={**env, "DATABASE_URL": ""})  # fmt: skip
    assert no_db.returncode == 2 and "set DATABASE_URL" in no_db.stderr


async def test_first_bots_are_read_by_key_before_any_statistics(conn: asyncpg.Connection) -> None:
    """The rollup's "new to the ecosystem" reads each new user's first sights through the primary
    key also while `analytics_bot_users` has no statistics yet (the first start after the upgrade
    fills it from empty, day by day). Its former `ORDER BY first_seen LIMIT 1` was planned here
    as a walk of the whole first_seen index for every user: quadratic, minutes per day at the
    benchmark's 100 M events."""
    await conn.execute("ALTER TABLE shared.analytics_bot_users SET (autovacuum_enabled = false)")
    day = datetime(2025, 1, 1, tzinfo=UTC)
    await conn.execute(
        "INSERT INTO shared.users (telegram_id, first_name, first_seen, last_seen)"
        " SELECT g, 'U', $1::timestamptz + g * interval '1 second', $1"
        " FROM generate_series(1, 5000) g",
        day,
    )
    await conn.execute("ANALYZE shared.users")
    await conn.execute(
        "INSERT INTO shared.analytics_bot_users (telegram_id, bot_name, first_seen)"
        " SELECT g, 'Bot ' || b,"
        " $1::timestamptz + g * interval '1 second' + (9 - b) * interval '1 minute'"
        " FROM generate_series(1, 5000) g, generate_series(0, 9) b",
        day,
    )
    assert await conn.fetchval(
        "SELECT reltuples < 0 FROM pg_class WHERE oid = 'shared.analytics_bot_users'::regclass"
    ), "the table must be without statistics for this test"
    plan = "\n".join(
        row[0]
        for row in await conn.fetch(
            "EXPLAIN SELECT * FROM shared.analytics_first_bots($1, $2)", day, day + timedelta(1)
        )
    )
    assert "Index Cond: (telegram_id = u.telegram_id)" in plan, plan
    assert "Filter: (telegram_id = u.telegram_id)" not in plan, plan
    # And the figures: every user's first bot is "Bot 9" (a minute before the others).
    rows = await conn.fetch(
        "SELECT * FROM shared.analytics_first_bots($1, $2)", day, day + timedelta(1)
    )
    assert [tuple(row) for row in rows] == [("Bot 9", 5000)]
