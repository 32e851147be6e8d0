"""Analytics against real PostgreSQL: users, events, batching, drops, outages, statistics."""

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from ecosystem_shared import analytics as analytics_module
from ecosystem_shared import analytics_store
from ecosystem_shared.analytics import Analytics, parse_counters
from ecosystem_shared.analytics_store import UserRow, upsert_users, write_batch
from ecosystem_shared.db import Database
from ecosystem_shared.migrations import apply_migrations, shared_migrations
from ecosystem_shared.rollups import catch_up_first_sights
from ecosystem_shared.sanitize import MAX_EVENT_DATA_BYTES, MAX_STRING, NAME_LIMIT
from ecosystem_shared.testing.postgres import PostgresServer
from ecosystem_shared.testing.waiting import fetch, wait_for_rows, wait_until

EVENTS = "SELECT * FROM shared.analytics_events ORDER BY id"


AnalyticsFactory = Callable[..., Analytics]


@pytest.fixture
async def make_analytics(db: Database) -> AsyncIterator[AnalyticsFactory]:
    made: list[Analytics] = []

    def make(bot_name: str = "Test Bot", **kwargs: Any) -> Analytics:
        kwargs.setdefault("flush_seconds", 60.0)  # tests flush explicitly unless they say so
        analytics = Analytics(kwargs.pop("database", db), bot_name, **kwargs)
        made.append(analytics)
        return analytics

    yield make
    for analytics in made:
        await analytics.close(timeout=2)


async def test_new_then_returning_user(make_analytics: AnalyticsFactory, database_url: str) -> None:
    picture, crm = make_analytics("Picture Bot"), make_analytics("CRM Bot")
    assert await picture.track_user_start(42, "neo", "Thomas", "Anderson", "en") is True
    assert await picture.track_user_start(42, "neo", "Thomas", "Anderson", "en") is False
    # Another bot (another process, empty cache) also sees a known user.
    assert await crm.track_user_start(42, "neo2", "Thomas", None, "ru") is False
    await picture.flush()
    await crm.flush()
    users = await fetch(database_url, "SELECT * FROM shared.users")
    assert len(users) == 1
    assert (users[0]["username"], users[0]["last_name"], users[0]["language_code"]) == (
        "neo2",
        None,
        "ru",
    )
    events = await fetch(database_url, EVENTS)
    assert [(e["bot_name"], e["event_type"]) for e in events] == [
        ("Picture Bot", "user_start"),
        ("Picture Bot", "user_start"),
        ("CRM Bot", "user_start"),
    ]
    assert [json.loads(e["event_data"]) if e["event_data"] else None for e in events] == [
        {"new": True},
        None,
        None,
    ]


async def test_burst_of_new_users_shares_one_upsert(
    make_analytics: AnalyticsFactory, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent /starts of unknown users are answered by one group upsert, not one each."""
    analytics = make_analytics()
    statements: list[int] = []
    real = analytics_store.upsert_users

    async def counting(conn: Any, users: Any, timeout: float) -> dict[int, bool]:
        rows = list(users)
        statements.append(len(rows))
        return await real(conn, rows, timeout)

    monkeypatch.setattr(analytics_module, "upsert_users", counting)
    ids = [*range(1000, 1050), 1000, 1001]  # two users press /start twice at once
    results = await asyncio.gather(
        *(analytics.track_user_start(i, None, f"U{i}", None, None) for i in ids)
    )
    assert statements == [50]  # one statement, each user once
    firsts, repeats = results[:50], results[50:]
    assert all(firsts) and not any(repeats)  # "new" once per user: one notification
    assert await analytics.track_user_start(1000, None, "U1000", None, None) is False  # cached
    assert statements == [50]
    await analytics.flush()
    rows = await fetch(database_url, "SELECT count(*) AS n FROM shared.users")
    assert rows[0]["n"] == 50


async def test_events_keep_jsonb_and_tracking_time(
    make_analytics: AnalyticsFactory, database_url: str
) -> None:
    analytics = make_analytics()
    await analytics.track_user_start(7, None, "Ann", None, None)
    before = datetime.now(UTC)
    await analytics.track_event(7, "article_request", {"nm_id": 12345678})
    await analytics.track_photos_sent(7, 5, event_data={"nm_id": 12345678})
    await analytics.track_video_sent(7, event_data={"nm_id": 1})
    await analytics.track_error(None, "Connection timeout")
    await asyncio.sleep(0.3)
    assert await analytics.flush() == 5
    rows = await fetch(
        database_url,
        "SELECT event_type, telegram_id, event_data->>'nm_id' AS nm, event_data, created_at"
        " FROM shared.analytics_events WHERE event_type <> 'user_start' ORDER BY id",
    )
    assert [(r["event_type"], r["telegram_id"], r["nm"]) for r in rows] == [
        ("article_request", 7, "12345678"),
        ("photo_sent", 7, "12345678"),
        ("video_sent", 7, "1"),
        ("error", None, None),
    ]
    assert json.loads(rows[1]["event_data"]) == {"nm_id": 12345678, "count": 5}
    assert json.loads(rows[3]["event_data"]) == {"error": "Connection timeout"}
    # created_at is when the event was tracked, not when the batch was written.
    assert all(before <= r["created_at"] < before + timedelta(seconds=0.25) for r in rows)


async def test_event_of_unknown_user_creates_placeholder(
    make_analytics: AnalyticsFactory, database_url: str
) -> None:
    analytics = make_analytics()
    await analytics.track_event(555, "message")
    await analytics.flush()
    user = (await fetch(database_url, "SELECT * FROM shared.users WHERE telegram_id = 555"))[0]
    assert user["first_name"] == ""
    # A later /start fills the real data in; the user already exists in the ecosystem.
    assert await analytics.track_user_start(555, "later", "Late", None, "en") is False
    await analytics.flush()
    user = (await fetch(database_url, "SELECT * FROM shared.users WHERE telegram_id = 555"))[0]
    assert (user["first_name"], user["username"]) == ("Late", "later")


async def test_flush_when_batch_is_full(
    make_analytics: AnalyticsFactory, database_url: str
) -> None:
    analytics = make_analytics(batch_size=5, flush_seconds=3600)
    await analytics.start()
    for i in range(4):
        await analytics.track_event(None, "tick", {"i": i})
    await asyncio.sleep(0.3)
    assert await fetch(database_url, EVENTS) == []  # below the batch size, timer far away
    await analytics.track_event(None, "tick", {"i": 4})
    rows = await wait_for_rows(database_url, EVENTS, count=5, timeout=5)
    assert len(rows) == 5


async def test_flush_on_timer(make_analytics: AnalyticsFactory, database_url: str) -> None:
    analytics = make_analytics(batch_size=1000, flush_seconds=0.2)
    await analytics.start()
    for _ in range(3):
        await analytics.track_event(None, "tick")
    assert len(await wait_for_rows(database_url, EVENTS, count=3, timeout=5)) == 3
    assert analytics.pending == 0


async def test_full_buffer_drops_new_rows_and_warns_once(
    make_analytics: AnalyticsFactory, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    analytics = make_analytics(buffer_size=10, batch_size=100)  # not started: nothing drains
    with caplog.at_level(logging.WARNING, logger="ecosystem_shared.analytics"):
        for i in range(15):
            await analytics.track_event(None, "tick", {"i": i})
    assert analytics.dropped == 5
    assert analytics.pending == 10
    warnings = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(warnings) == 1
    assert await analytics.flush() == 10
    rows = await fetch(database_url, EVENTS)
    assert [json.loads(r["event_data"])["i"] for r in rows] == list(range(10))  # oldest kept
    # The four drops after the first warning are not lost from the log: told at exit.
    with caplog.at_level(logging.WARNING, logger="ecosystem_shared.analytics"):
        await analytics.close()
    told = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(told) == 2 and "dropped 4 rows" in told[1] and "5 since start" in told[1], told


@pytest.mark.slow
async def test_outage_keeps_rows_until_the_database_returns(own_server: PostgresServer) -> None:
    db = Database(own_server.url, migrations=shared_migrations(), reconnect_seconds=0.2)
    await db.start()
    analytics = Analytics(db, "Outage Bot", flush_seconds=0.1, batch_size=50)
    await analytics.start()
    try:
        assert await analytics.track_user_start(1, "u1", "One", None, None) is True
        await asyncio.to_thread(own_server.stop)
        # Unknown user while the database is down: not reported new, upsert buffered.
        assert await analytics.track_user_start(2, "u2", "Two", None, None) is False
        for i in range(120):
            await analytics.track_event(1 + i % 2, "during_outage", {"i": i})
        await asyncio.sleep(0.5)
        assert analytics.pending >= 120
        assert analytics.dropped == 0
        assert analytics.upserts_deferred == 1  # user 2, stored once the database is back
        await asyncio.to_thread(own_server.start)
        rows = await wait_for_rows(
            own_server.url,
            "SELECT * FROM shared.analytics_events WHERE event_type = 'during_outage'",
            count=120,
            timeout=15,
        )
        assert sorted(json.loads(r["event_data"])["i"] for r in rows) == list(range(120))
        users = await fetch(own_server.url, "SELECT telegram_id, first_name FROM shared.users")
        assert sorted((u["telegram_id"], u["first_name"]) for u in users) == [
            (1, "One"),
            (2, "Two"),
        ]
        assert analytics.dropped == 0
        assert db.connections_lost == 1
        await wait_until(analytics.flush, lambda _: analytics.pending == 0, what="empty buffer")
        assert analytics.written == 2 + 2 + 120  # users 1 and 2, their starts, the outage
    finally:
        await analytics.close(timeout=2)
        await db.close()


async def test_nul_bytes_surrogates_and_huge_values_are_stored(
    make_analytics: AnalyticsFactory, database_url: str
) -> None:
    analytics = make_analytics()
    await analytics.track_user_start(9, "na\x00me", "Fi\x00rst\ud800", None, "e\x00n")
    data = {"s": "a\x00b", "big": "x" * 100_000, "k\x00ey": "\udfff", "n": float("nan")}
    await analytics.track_event(9, "weird\x00type", data)
    await analytics.track_event(9, "huge", {f"k{i}": "y" * 1000 for i in range(50)})
    await analytics.track_event(9, "odd", [object(), {1, 2}, datetime(2024, 1, 2, tzinfo=UTC)])
    for bad_id in ("abc", True, 2**70):
        await analytics.track_event(bad_id, "bad_id")  # type: ignore[arg-type]
    await analytics.flush()
    assert analytics.dropped == 0
    user = (await fetch(database_url, "SELECT * FROM shared.users WHERE telegram_id = 9"))[0]
    assert (user["username"], user["first_name"], user["language_code"]) == (
        "name",
        "First?",
        "en",
    )
    rows = {r["event_type"]: r for r in await fetch(database_url, EVENTS)}
    weird = json.loads(rows["weirdtype"]["event_data"])
    assert weird == {"s": "ab", "big": "x" * MAX_STRING, "key": "?", "n": None}
    huge = rows["huge"]["event_data"]
    assert len(huge.encode()) <= MAX_EVENT_DATA_BYTES + 100
    assert json.loads(huge)["truncated"] is True
    odd = json.loads(rows["odd"]["event_data"])
    assert odd[1] == [1, 2] and odd[2] == "2024-01-02T00:00:00+00:00"
    bad = await fetch(database_url, "SELECT telegram_id FROM shared.analytics_events"
                      " WHERE event_type = 'bad_id'")  # fmt: skip
    assert [r["telegram_id"] for r in bad] == [None, None, None]


async def test_user_rows_of_any_writer_are_stored_within_caps(db_conn: asyncpg.Connection) -> None:
    """The path a bot's own service (e.g. the CRM) uses to store users: UserRow + upsert_users."""
    name = ("Ω\x00\ud800" * 2604)[:7811]  # 7,811 characters, NUL bytes, a lone surrogate
    now = datetime.now(UTC)
    await upsert_users(db_conn, [UserRow(11, name, name, name, name, now)], timeout=10)
    row = await db_conn.fetchrow("SELECT * FROM shared.users WHERE telegram_id = 11")
    assert row is not None
    for column in ("username", "first_name", "last_name"):
        assert len(row[column]) <= NAME_LIMIT and "\x00" not in row[column]
        assert row[column].startswith("Ω?Ω?")  # cut and repaired, not dropped
    assert len(row["language_code"]) <= 16
    with pytest.raises(ValueError, match="not a storable Telegram id"):
        UserRow(2**63, None, "x", None, None, now)


async def test_copy_failure_falls_back_to_insert(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A text-format jsonb codec (common in applications) cannot be used by binary COPY.
    conn = await asyncpg.connect(database_url)
    try:
        await conn.set_type_codec(
            "jsonb", schema="pg_catalog", encoder=json.dumps, decoder=json.loads
        )
        await apply_migrations(conn, shared_migrations())
        now = datetime.now(UTC)
        with caplog.at_level(logging.WARNING):
            ids = await write_batch(conn, [(None, "b", "e", {"a": 1}, now)], 5.0)
        assert ids == []
        assert "COPY failed" in caplog.text
        assert await conn.fetchval("SELECT event_data->>'a' FROM shared.analytics_events") == "1"
    finally:
        await conn.close()


async def test_disabled_analytics_does_nothing(db: Database, database_url: str) -> None:
    off = Analytics(db, "Off Bot", enabled=False)
    no_db = Analytics(Database(None), "No DB Bot")
    for analytics in (off, no_db):
        await analytics.start()
        assert await analytics.track_user_start(1, "u", "U", None, None) is False
        await analytics.track_event(1, "x", {"a": 1})
        assert analytics.pending == 0
        assert await analytics.flush() == 0
        assert (await analytics.get_daily_stats()).bots == {}
        await analytics.close()
    assert await fetch(database_url, "SELECT * FROM shared.users") == []


async def test_close_flushes_buffer_and_logs_the_counters(
    db: Database, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    analytics = Analytics(db, "Bye Bot", flush_seconds=3600)
    await analytics.start()
    await analytics.track_event(None, "last_words")
    zero = {"written": 0, "dropped": 0, "pending": 0, "upserts_deferred": 0, "connections_lost": 0}
    assert analytics.counters() == zero | {"pending": 1}
    with caplog.at_level(logging.INFO, logger="ecosystem_shared.analytics"):
        await analytics.close()
    assert len(await fetch(database_url, EVENTS)) == 1
    expected = zero | {"written": 1}
    assert analytics.counters() == expected
    # What a benchmark or an operator reads back from the process's output.
    assert parse_counters(caplog.text) == expected
    assert parse_counters("no such line\n") is None


async def test_daily_stats(make_analytics: AnalyticsFactory, database_url: str) -> None:
    one, two = make_analytics("Bot One"), make_analytics("Bot Two")
    long_ago = datetime.now(UTC) - timedelta(days=3)
    conn = await asyncpg.connect(database_url)
    try:  # user 3 has used Bot One before the period
        await conn.execute(
            "INSERT INTO shared.users (telegram_id, first_name, first_seen, last_seen)"
            " VALUES (3, 'Old', $1, $1)",
            long_ago,
        )
        await conn.execute(
            "INSERT INTO shared.analytics_events (telegram_id, bot_name, event_type, created_at)"
            " VALUES (3, 'Bot One', 'user_start', $1), (3, 'Bot One', 'photo_sent', $1)",
            long_ago,
        )
        await catch_up_first_sights(conn)  # the bots' maintenance, for rows not from a writer
    finally:
        await conn.close()
    assert await one.track_user_start(1, None, "A", None, None) is True
    assert await two.track_user_start(1, None, "A", None, None) is False
    assert await one.track_user_start(2, None, "B", None, None) is True
    assert await one.track_user_start(2, None, "B", None, None) is False
    assert await one.track_user_start(3, None, "Old", None, None) is False
    await one.track_photos_sent(2, 3)
    await one.track_error(2, "boom")
    await two.track_error(None, "bang")
    await two.track_event(1, "custom")
    await two.track_event(1, "custom")

    stats = await one.get_daily_stats()  # flushes its own buffer first
    await two.flush()
    stats = await two.get_daily_stats()
    assert stats.period_end - stats.period_start == timedelta(hours=24)
    assert stats.new_users == 2  # users 1 and 2 are new to the ecosystem
    assert set(stats.bots) == {"Bot One", "Bot Two"}
    b1, b2 = stats.bots["Bot One"], stats.bots["Bot Two"]
    assert (b1.new_users, b1.starts, b1.errors, b1.events) == (2, 4, 1, {"photo_sent": 1})
    assert (b2.new_users, b2.starts, b2.errors, b2.events) == (1, 1, 1, {"custom": 2})
    only_two = await one.get_daily_stats("Bot Two")
    assert set(only_two.bots) == {"Bot Two"} and only_two.new_users == 2
