"""shared.bot_audience against a real PostgreSQL: the migration's backfill, block marks, counts,
the analytics writer's sights and buffered marks, my_chat_member and 403s in the dispatcher (no
database call on the handler's path), the digest and /stats."""

import asyncio
import contextlib
import contextvars
import logging
import random
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time
from typing import Any

import asyncpg
import pytest
import pytz
from aiogram import Router
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.types import ChatMemberUpdated

from ecosystem_shared.analytics import Analytics
from ecosystem_shared.analytics_store import UserRow
from ecosystem_shared.audience import (
    LAST_SEEN_RESOLUTION,
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
from ecosystem_shared.db import Database, configure_connection
from ecosystem_shared.digest import send_digest_once
from ecosystem_shared.migrations import apply_migrations, shared_migrations
from ecosystem_shared.partitions import finish_partitioning
from ecosystem_shared.testing.fake_bot_api import FakeBotAPI
from ecosystem_shared.testing.in_process import CHANNEL, InProcessBot, StartInProcess
from ecosystem_shared.texts import shared_texts

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


# -- the writer path: sights and buffered marks with each analytics batch ---------------------


async def audience_row(
    db: Database, telegram_id: int, bot_name: str | None = None
) -> asyncpg.Record | None:
    """The user's row (of ``bot_name``; the tests that leave it out have one bot)."""
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT * FROM shared.bot_audience"
            " WHERE telegram_id = $1 AND ($2::text IS NULL OR bot_name = $2)",
            telegram_id,
            bot_name,
        )
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


async def test_the_writer_keeps_sights_and_languages(db: Database) -> None:
    analytics = Analytics(db, "Picture Bot", flush_seconds=3600)
    try:
        # A new user: stored at once; the event waits for the batch, and so does the audience.
        assert await analytics.track_user_start(301, "u", "U", None, "de") is True
        assert await audience_row(db, 301) is None
        await analytics.flush()
        first = await audience_row(db, 301)
        assert first is not None and first["language_code"] == "de"
        assert first["first_seen"] == first["last_seen"] and first["blocked_at"] is None
        # Known now: the next /start (language changed) goes through the buffer with its row.
        await analytics.track_user_start(301, "u", "U", None, "fr")
        await analytics.track_event(301, "photo_sent", bot_name="CRM Bot")
        await analytics.flush()
        again = await audience_row(db, 301, "Picture Bot")
        assert again is not None and again["language_code"] == "fr"
        assert again["first_seen"] == first["first_seen"] < again["last_seen"]
        async with db.acquire() as conn:
            bots = await conn.fetch(
                "SELECT bot_name FROM shared.bot_audience WHERE telegram_id = 301 ORDER BY 1"
            )
        assert [row["bot_name"] for row in bots] == ["CRM Bot", "Picture Bot"]
    finally:
        await analytics.close()


async def test_a_known_sight_is_written_again_only_when_it_says_more(db: Database) -> None:
    """An active user costs one upsert per LAST_SEEN_RESOLUTION, not one per batch."""
    analytics = Analytics(db, "Picture Bot", flush_seconds=3600)
    try:
        start = datetime.now(UTC)
        steps = [
            (timedelta(0), "en", True),  # new pair
            (timedelta(minutes=1), None, False),  # within the resolution: skipped
            (timedelta(minutes=2), "en", False),  # same language: skipped
            (timedelta(minutes=3), "es", True),  # a new language: written
            (LAST_SEEN_RESOLUTION + timedelta(minutes=3, seconds=1), None, True),  # stale: written
        ]
        stored = start
        for offset, language, written in steps:
            if language is not None:
                analytics._enqueue(UserRow(311, None, "U", None, language, start + offset))
            analytics._add_event(311, "photo_sent", None, None, start + offset)
            await analytics.flush()
            row = await audience_row(db, 311)
            assert row is not None
            stored = start + offset if written else stored
            assert row["last_seen"] == stored, offset
    finally:
        await analytics.close()


async def test_buffered_marks_reach_the_table_with_the_next_batch(db: Database) -> None:
    analytics = Analytics(db, "Picture Bot", flush_seconds=3600)
    try:
        await analytics.track_event(302, "photo_sent")
        analytics.mark_blocked(302)
        analytics.mark_blocked(None)  # nobody to mark: ignored
        assert analytics.pending == 2
        assert await analytics.flush() == 2
        row = await audience_row(db, 302)
        assert row is not None and row["blocked_at"] is not None
        assert row["blocked_at"] >= row["last_seen"]
        analytics.mark_reachable(302, language_code="uk")
        await analytics.flush()
        row = await audience_row(db, 302)
        assert row is not None and (row["blocked_at"], row["language_code"]) == (None, "uk")
    finally:
        await analytics.close()


async def test_marks_wait_through_an_outage(db: Database) -> None:
    analytics = Analytics(db, "Picture Bot", flush_seconds=3600)
    try:
        available = db.available
        db._healthy = False  # what a lost connection sets: writes wait, nothing is dropped
        analytics.mark_blocked(303)
        assert await analytics.flush() == 0 and analytics.pending == 1
        db._healthy = available
        assert await analytics.flush() == 1
        row = await audience_row(db, 303)
        assert row is not None and row["blocked_at"] is not None
    finally:
        await analytics.close()


# -- in the dispatcher: my_chat_member and 403s, with no database call on the handler path ----


class HandlerPathCalls:
    """Counts the database connections taken while updates are handled (every query goes
    through ``Database.acquire``), and the statements run on them. Only calls made in
    :meth:`feed` count: the analytics writer's background task runs outside it."""

    def __init__(self, h: InProcessBot, monkeypatch: pytest.MonkeyPatch) -> None:
        self.h = h
        self.acquired = 0
        self.queries: list[str] = []
        self._handling: contextvars.ContextVar[bool] = contextvars.ContextVar(
            "handling", default=False
        )
        original = h.services.db.acquire

        @contextlib.asynccontextmanager
        async def counting(*, timeout: float | None = None) -> AsyncIterator[asyncpg.Connection]:
            counted = self._handling.get()
            self.acquired += counted
            async with original(timeout=timeout) as conn:
                if counted:
                    conn.add_query_logger(self._log)
                try:
                    yield conn
                finally:
                    if counted:
                        conn.remove_query_logger(self._log)

        monkeypatch.setattr(h.services.db, "acquire", counting)

    def _log(self, record: Any) -> None:
        self.queries.append(str(record.query))

    async def feed(self, update: dict[str, Any]) -> None:
        token = self._handling.set(True)
        try:
            await self.h.feed(update)
        finally:
            self._handling.reset(token)


async def test_my_chat_member_flips_the_row_with_no_database_call(
    in_process_bot: StartInProcess, fake_api: FakeBotAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = await in_process_bot(ANALYTICS_FLUSH_SECONDS=3600)
    assert "my_chat_member" in h.dp.resolve_used_update_types()
    await h.feed(fake_api.push_message("/start", user_id=401, language_code="en"))
    await h.analytics.flush()
    calls = HandlerPathCalls(h, monkeypatch)

    await calls.feed(fake_api.push_my_chat_member(401, "kicked"))
    assert h.analytics.pending == 1
    await h.analytics.flush()
    row = await audience_row(h.services.db, 401)
    assert row is not None and row["blocked_at"] is not None

    update = fake_api.push_my_chat_member(401, "member")
    update["my_chat_member"]["from"]["language_code"] = "pt-br"
    await calls.feed(update)
    await calls.feed(fake_api.push_message("/start", user_id=401))  # known: buffered too
    assert (calls.acquired, calls.queries) == (0, [])  # the handler path: buffered only
    await h.analytics.flush()
    row = await audience_row(h.services.db, 401)
    assert row is not None and (row["blocked_at"], row["language_code"]) == (None, "pt-br")


async def test_group_membership_changes_are_not_the_audience(
    in_process_bot: StartInProcess, fake_api: FakeBotAPI
) -> None:
    h = await in_process_bot(ANALYTICS_FLUSH_SECONDS=3600)
    update = fake_api.push_my_chat_member(402, "kicked")
    update["my_chat_member"]["chat"] = fake_api.chat(-100402, "supergroup")
    await h.feed(update)
    assert h.analytics.pending == 0


async def test_a_403_to_a_reply_marks_the_user_blocked_and_is_no_error(
    in_process_bot: StartInProcess,
    fake_api: FakeBotAPI,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = await in_process_bot(ANALYTICS_FLUSH_SECONDS=3600)
    await h.feed(fake_api.push_message("/start", user_id=403))
    await h.analytics.flush()
    calls = HandlerPathCalls(h, monkeypatch)
    fake_api.block(403)  # blocked between sending the message and getting the reply
    fake_api.deactivate(404)
    caplog.set_level(logging.INFO, logger="ecosystem_shared.middlewares.errors")
    await calls.feed(fake_api.push_message("/start", user_id=403))
    await calls.feed(fake_api.push_message("/help", user_id=404))
    assert (calls.acquired, calls.queries) == (0, [])  # /start, both marks: all buffered
    assert [s.error_code for s in fake_api.sends if s.chat_id in (403, 404)][-2:] == [403, 403]
    assert len(fake_api.send_log.select(chat_id=403)) == 2  # no error text tried after the 403
    assert "Unhandled error" not in caplog.text and "not answered" in caplog.text
    assert [type(error) for error in h.errors] == [TelegramForbiddenError] * 2
    await h.analytics.flush()
    for user in (403, 404):
        row = await audience_row(h.services.db, user)
        assert row is not None and row["blocked_at"] is not None, user
    async with h.services.db.acquire() as conn:
        errors = await conn.fetchval(
            "SELECT count(*) FROM shared.analytics_events WHERE event_type = 'error'"
        )
    assert errors == 0


async def test_a_notification_refused_with_403_marks_the_user(
    in_process_bot: StartInProcess, fake_api: FakeBotAPI
) -> None:
    h = await in_process_bot(ANALYTICS_FLUSH_SECONDS=3600)
    fake_api.block(405)
    fake_api.forget_chats(406)
    with pytest.raises(TelegramForbiddenError):
        await h.bot.send_message(405, "news")
    with pytest.raises(TelegramBadRequest):
        await h.bot.send_message(406, "news")  # chat not found: not a block
    fake_api.fail_next(
        "sendMessage", error_code=403, description="Forbidden: bot was kicked from the group chat"
    )
    with pytest.raises(TelegramForbiddenError):
        await h.bot.send_message(-100405, "news")  # a group: not a user's block
    assert h.analytics.pending == 1
    await h.analytics.flush()
    assert await audience_row(h.services.db, 405) is not None
    assert await audience_row(h.services.db, 406) is None


async def test_the_bots_own_my_chat_member_handlers_still_run(
    in_process_bot: StartInProcess, fake_api: FakeBotAPI
) -> None:
    seen: list[str] = []

    async def own(event: ChatMemberUpdated) -> None:
        seen.append(event.new_chat_member.status)

    routes = Router(name="own-members")
    routes.my_chat_member.register(own)
    h = await in_process_bot(routers=[routes], ANALYTICS_FLUSH_SECONDS=3600)
    await h.feed(fake_api.push_my_chat_member(407, "kicked"))
    assert seen == ["kicked"] and h.analytics.pending == 1


# -- the digest and /stats ---------------------------------------------------------------------


async def test_the_digest_and_stats_show_reachable_and_blocked(
    in_process_bot: StartInProcess, fake_api: FakeBotAPI
) -> None:
    zone = "Asia/Tokyo"
    h = await in_process_bot(ANALYTICS_FLUSH_SECONDS=3600, DIGEST_TIMEZONE=zone)
    bot_name = h.analytics.bot_name
    yesterday_noon = datetime.combine(
        datetime.now(UTC).astimezone(pytz.timezone(zone)).date() - timedelta(days=1),
        dt_time(12),
    )
    blocked_at = pytz.timezone(zone).localize(yesterday_noon).astimezone(UTC)
    for user in (501, 502, 503):
        await h.analytics.track_event(user, "photo_sent")
    marks = (blocked_at, blocked_at - timedelta(days=2))  # yesterday there, and before
    h.analytics.mark_blocked(501, at=marks[0])
    h.analytics.mark_blocked(502, at=marks[1])
    h.analytics.mark_blocked(504, at=blocked_at, bot_name="Other Bot")
    await h.analytics.flush()

    day = datetime.now(UTC).astimezone(pytz.timezone(zone)).date()
    assert await send_digest_once(
        h.services.db, h.analytics, h.services.notifier, day=day, timezone=zone
    )
    text = "\n".join(
        str(call.params.get("caption") or call.params.get("text"))
        for call in fake_api.calls(chat_id=CHANNEL)
    )
    audience = shared_texts("en").digest_audience
    assert audience.format(reachable=1, blocked=1) in text  # this bot: 503 reachable
    assert audience.format(reachable=0, blocked=1) in text  # Other Bot: no events, listed
    stats = await h.analytics.get_daily_stats(bot_name)  # /stats: the last 24 hours
    assert set(stats.bots) == {bot_name}
    in_period = sum(stats.period_start <= at < stats.period_end for at in marks)
    assert (stats.bots[bot_name].reachable, stats.bots[bot_name].blocked) == (1, in_period)
