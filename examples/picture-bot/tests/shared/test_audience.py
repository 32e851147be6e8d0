"""shared.bot_audience against a real PostgreSQL: the migration's backfill, block marks and the
counts. How a bot keeps it up to date (the analytics writer, my_chat_member and 403s, the digest
and /stats): test_audience_tracking.py."""

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from ecosystem_shared.audience import (
    AudienceCounts,
    AudienceMark,
    Sight,
    apply_marks,
    audience_counts,
    audience_counts_between,
    compact_counts,
    mark_blocked,
    mark_reachable,
    upsert_sights,
)
from ecosystem_shared.db import configure_connection
from ecosystem_shared.migrations import apply_migrations, shared_migrations
from ecosystem_shared.partitions import finish_partitioning

AUDIENCE_FILE = "04-audience.sql"
BEFORE_AUDIENCE = [path for path in shared_migrations() if path.name != AUDIENCE_FILE]
AUDIENCE = "SELECT * FROM shared.bot_audience ORDER BY bot_name, telegram_id"
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)


@pytest.fixture
def conn(db_conn: asyncpg.Connection) -> asyncpg.Connection:
    return db_conn  # the test kit's connection, under the name these tests use


@pytest.fixture
async def old_conn(empty_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """An ecosystem deployed before the audience table: every other shared file applied."""
    connection = await asyncpg.connect(empty_database_url)
    await configure_connection(connection)
    await apply_migrations(connection, BEFORE_AUDIENCE)
    yield connection
    await connection.close()


async def add_events(conn: asyncpg.Connection, *events: tuple[int | None, str, datetime]) -> None:
    ids = sorted({user for user, _, _ in events if user is not None})
    await conn.executemany(
        "INSERT INTO shared.users (telegram_id, first_name, language_code) VALUES ($1, 'U', $2)"
        " ON CONFLICT DO NOTHING",
        [(user, "ru" if user % 2 else None) for user in ids],
    )
    await conn.executemany(
        "INSERT INTO shared.analytics_events (telegram_id, bot_name, event_type, created_at)"
        " VALUES ($1, $2, 'user_start', $3)",
        events,
    )


async def apply_audience(conn: asyncpg.Connection) -> list[str]:
    audience = [path for path in shared_migrations() if path.name == AUDIENCE_FILE]
    return await apply_migrations(conn, audience)


def rows_by_key(records: list[asyncpg.Record]) -> dict[tuple[str, int], tuple[object, ...]]:
    return {
        (r["bot_name"], r["telegram_id"]): (
            r["first_seen"],
            r["last_seen"],
            r["language_code"],
            r["blocked_at"],
        )
        for r in records
    }


async def test_the_backfill_takes_first_and_last_sight_per_bot(
    old_conn: asyncpg.Connection,
) -> None:
    await add_events(
        old_conn,
        (1, "Picture Bot", T0),
        (1, "Picture Bot", T0 + timedelta(days=3)),
        (1, "CRM Bot", T0 + timedelta(days=1)),
        (2, "Picture Bot", T0 + timedelta(hours=5)),
        (None, "Picture Bot", T0),  # anonymous: nobody to reach
    )
    # A user whose events retention dropped: only the first sight is left.
    await old_conn.execute(
        "INSERT INTO shared.users (telegram_id, first_name) VALUES (3, 'Old')"
        " ON CONFLICT DO NOTHING"
    )
    await old_conn.execute(
        "INSERT INTO shared.analytics_bot_users (telegram_id, bot_name, first_seen)"
        " VALUES (3, 'CRM Bot', $1), (1, 'Picture Bot', $2)",
        T0 - timedelta(days=400),
        T0 - timedelta(days=30),
    )
    assert await apply_audience(old_conn) == [f"ecosystem_shared/{AUDIENCE_FILE}"]
    expected = {
        ("CRM Bot", 1): (T0 + timedelta(days=1), T0 + timedelta(days=1), "ru", None),
        ("CRM Bot", 3): (T0 - timedelta(days=400), T0 - timedelta(days=400), None, None),
        ("Picture Bot", 1): (T0 - timedelta(days=30), T0 + timedelta(days=3), "ru", None),
        ("Picture Bot", 2): (T0 + timedelta(hours=5), T0 + timedelta(hours=5), None, None),
    }
    assert rows_by_key(await old_conn.fetch(AUDIENCE)) == expected
    # Run again as an init script would (outside the migration record): nothing changes.
    sql = next(p for p in shared_migrations() if p.name == AUDIENCE_FILE).read_text("utf-8")
    await old_conn.execute(sql)
    assert rows_by_key(await old_conn.fetch(AUDIENCE)) == expected


async def test_the_backfill_reads_a_plain_table_being_partitioned(
    empty_database_url: str,
) -> None:
    """An ecosystem from before partitioning: events in the plain table, the switch pending
    when the audience file runs, then finished: the audience holds every user either way."""
    plain = [path for path in shared_migrations() if path.name < "04"]
    conn = await asyncpg.connect(empty_database_url)
    try:
        await configure_connection(conn)
        await apply_migrations(conn, plain)
        await add_events(conn, (7, "Picture Bot", T0), (7, "Picture Bot", T0 + timedelta(days=40)))
        await apply_migrations(conn, shared_migrations())  # 04, then 06-08 (switch pending)
        assert await conn.fetchval("SELECT to_regclass('shared.analytics_events_partitioned')")
        rows = rows_by_key(await conn.fetch(AUDIENCE))
        assert rows == {("Picture Bot", 7): (T0, T0 + timedelta(days=40), "ru", None)}
        await finish_partitioning(conn)
        kind = await conn.fetchval(
            "SELECT relkind FROM pg_class WHERE oid = 'shared.analytics_events'::regclass"
        )
        assert kind == b"p"
    finally:
        await conn.close()


async def test_a_new_ecosystem_starts_with_an_empty_audience(conn: asyncpg.Connection) -> None:
    assert await conn.fetch(AUDIENCE) == []
    key = await conn.fetchval(
        "SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_index i"
        " CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
        " WHERE i.indrelid = 'shared.bot_audience'::regclass AND i.indisprimary"
    )
    assert key == ["bot_name", "telegram_id"]


async def test_block_then_unblock(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "INSERT INTO shared.bot_audience (bot_name, telegram_id, first_seen, last_seen)"
        " VALUES ('Picture Bot', 5, $1, $1)",
        T0,
    )
    assert await mark_blocked(conn, "Picture Bot", 5, at=T0 + timedelta(hours=1)) is True
    # A second block (a 403 after the kicked update) keeps the time of the first.
    assert await mark_blocked(conn, "Picture Bot", 5, at=T0 + timedelta(hours=2)) is True
    row = await conn.fetchrow(AUDIENCE)
    assert row["blocked_at"] == T0 + timedelta(hours=1)
    assert row["last_seen"] == T0  # a 403 is not a sight of the user
    assert await mark_reachable(
        conn, "Picture Bot", 5, at=T0 + timedelta(hours=3), language_code="de"
    )
    row = await conn.fetchrow(AUDIENCE)
    assert (row["blocked_at"], row["last_seen"], row["language_code"]) == (
        None,
        T0 + timedelta(hours=3),
        "de",
    )
    assert row["first_seen"] == T0


async def test_late_marks_do_not_undo_newer_ones(conn: asyncpg.Connection) -> None:
    # Blocked at +5h; an unblock observed at +4h arrives late: the block stands.
    assert await mark_blocked(conn, "Picture Bot", 6, at=T0 + timedelta(hours=5)) is True
    assert await mark_reachable(conn, "Picture Bot", 6, at=T0 + timedelta(hours=4)) is False
    row = await conn.fetchrow(AUDIENCE)
    assert row["blocked_at"] == T0 + timedelta(hours=5)
    # Another block (a 403 observed earlier, applied late) keeps the recorded time.
    assert await mark_blocked(conn, "Picture Bot", 6, at=T0 + timedelta(hours=1)) is True
    row = await conn.fetchrow(AUDIENCE)
    assert row["blocked_at"] == T0 + timedelta(hours=5)


async def test_marks_of_users_never_seen_create_their_row(conn: asyncpg.Connection) -> None:
    assert await mark_blocked(conn, "CRM Bot", 9, at=T0) is True
    row = await conn.fetchrow(AUDIENCE)
    assert (row["first_seen"], row["last_seen"], row["blocked_at"]) == (T0, T0, T0)


async def test_many_marks_in_one_statement_latest_wins(conn: asyncpg.Connection) -> None:
    marks = [
        AudienceMark("Picture Bot", 1, True, T0 + timedelta(minutes=2)),
        AudienceMark("Picture Bot", 1, False, T0 + timedelta(minutes=1)),
        AudienceMark("Picture Bot", 2, False, T0, "en"),
        AudienceMark("CRM Bot", 1, False, T0),
    ]
    result = await apply_marks(conn, marks)
    assert result == {("Picture Bot", 1): True, ("Picture Bot", 2): False, ("CRM Bot", 1): False}
    assert await apply_marks(conn, []) == {}


async def test_counts_reachable_and_blocked_yesterday_in_a_time_zone(
    conn: asyncpg.Connection,
) -> None:
    zone = "Asia/Tokyo"  # UTC+9: the local day starts at 15:00 UTC the day before
    day = date(2026, 3, 10)
    start = datetime(2026, 3, 9, 15, tzinfo=UTC)
    for user in range(1, 7):
        await mark_reachable(conn, "Picture Bot", user, at=start - timedelta(days=5))
    await mark_reachable(conn, "CRM Bot", 1, at=start - timedelta(days=5))
    await mark_blocked(conn, "Picture Bot", 1, at=start - timedelta(seconds=1))  # the day before
    await mark_blocked(conn, "Picture Bot", 2, at=start)  # first moment of the day
    await mark_blocked(conn, "Picture Bot", 3, at=start + timedelta(hours=23, minutes=59))
    await mark_blocked(conn, "Picture Bot", 4, at=start + timedelta(days=1))  # the next day
    counts = await audience_counts(conn, zone, day=day)
    assert counts == {
        "Picture Bot": AudienceCounts(reachable=2, blocked_in_period=2, blocked=4),
        "CRM Bot": AudienceCounts(reachable=1, blocked_in_period=0, blocked=0),
    }
    assert await audience_counts(conn, zone, day=day, bot_name="CRM Bot") == {
        "CRM Bot": AudienceCounts(1, 0, 0)
    }
    # Default day: yesterday there (Tokyo has no DST: 24 h ago is always yesterday).
    await mark_blocked(conn, "CRM Bot", 1, at=datetime.now(UTC) - timedelta(days=1))
    assert (await audience_counts(conn, zone))["CRM Bot"] == AudienceCounts(0, 1, 1)


# -- the counts: deltas kept by triggers, whoever writes, summed by the maintenance ----------

BRUTE_COUNTS = """
SELECT bot_name, count(*) FILTER (WHERE blocked_at IS NULL) AS reachable,
       count(*) FILTER (WHERE blocked_at >= $1 AND blocked_at < $2) AS blocked_in_period,
       count(blocked_at) AS blocked
FROM shared.bot_audience GROUP BY bot_name
"""
BOTS = ("Picture Bot", "CRM Bot", "Текстовый бот")


async def brute_counts(
    conn: asyncpg.Connection, start: datetime, end: datetime
) -> dict[str, AudienceCounts]:
    rows = await conn.fetch(BRUTE_COUNTS, start, end)
    return {
        r["bot_name"]: AudienceCounts(r["reachable"], r["blocked_in_period"], r["blocked"])
        for r in rows
    }


async def random_write(conn: asyncpg.Connection, rng: random.Random) -> None:
    """One write as any writer might do it: sights, marks, a script's UPDATE or DELETE."""
    at = T0 + timedelta(minutes=rng.randrange(0, 3000))
    users = rng.sample(range(1, 60), rng.randint(1, 8))
    bot = rng.choice(BOTS)
    kind = rng.randrange(5)
    if kind == 0:
        await upsert_sights(conn, [Sight(bot, user, at, at) for user in sorted(users)])
    elif kind == 1:
        marks = [AudienceMark(rng.choice(BOTS), u, rng.random() < 0.6, at) for u in users]
        await apply_marks(conn, marks)
    elif kind == 2:
        await conn.execute(
            "UPDATE shared.bot_audience SET blocked_at = NULL"
            " WHERE bot_name = $1 AND telegram_id = ANY($2)",
            bot,
            users,
        )
    elif kind == 3:
        await conn.execute(
            "DELETE FROM shared.bot_audience WHERE bot_name = $1 AND telegram_id = ANY($2)",
            bot,
            users,
        )
    else:
        await compact_counts(conn)


async def test_counts_follow_every_kind_of_write(conn: asyncpg.Connection) -> None:
    rng = random.Random(20261205)
    start, end = T0 + timedelta(hours=10), T0 + timedelta(hours=34)
    for step in range(400):
        await random_write(conn, rng)
        if step % 25 == 24:
            assert await audience_counts_between(conn, start, end) == {
                bot: counts for bot, counts in (await brute_counts(conn, start, end)).items()
            }, step
    await compact_counts(conn)
    left = await conn.fetch("SELECT bot_name FROM shared.bot_audience_counts")
    assert sorted(r["bot_name"] for r in left) == sorted(set(r["bot_name"] for r in left))
    assert await audience_counts_between(conn, start, end) == await brute_counts(conn, start, end)


async def test_counts_stay_exact_under_concurrent_writers_and_compaction(
    database_url: str,
) -> None:
    conns = [await asyncpg.connect(database_url) for _ in range(3)]
    try:

        async def writer(conn: asyncpg.Connection, seed: int) -> int:
            rng = random.Random(seed)
            done = 0
            for _ in range(150):
                # Two writers of overlapping rows in other orders: one rolls back, its counts too.
                with contextlib.suppress(asyncpg.DeadlockDetectedError):
                    await random_write(conn, rng)
                    done += 1
            return done

        done = await asyncio.gather(*(writer(conn, seed) for seed, conn in enumerate(conns)))
        assert sum(done) > 400, done
        start, end = T0, T0 + timedelta(days=3)
        assert await audience_counts_between(conns[0], start, end) == await brute_counts(
            conns[0], start, end
        )
    finally:
        for conn in conns:
            await conn.close()


async def test_the_backfill_counts_what_it_fills(old_conn: asyncpg.Connection) -> None:
    await add_events(old_conn, (1, "Picture Bot", T0), (2, "Picture Bot", T0), (1, "CRM Bot", T0))
    await apply_audience(old_conn)
    counts = await audience_counts_between(old_conn, T0, T0 + timedelta(days=1))
    assert counts == {"Picture Bot": AudienceCounts(2, 0, 0), "CRM Bot": AudienceCounts(1, 0, 0)}
