"""shared.analytics_events partitioned by month (real PostgreSQL): any date insertable,
partitions ahead, the online switch from the plain table, retention after a backup."""

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from ecosystem_shared.analytics import Analytics
from ecosystem_shared.analytics_maintenance import AnalyticsMaintenance
from ecosystem_shared.analytics_store import write_batch
from ecosystem_shared.db import Database, configure_connection
from ecosystem_shared.migrations import apply_migrations, shared_migrations
from ecosystem_shared.partitions import finish_partitioning, maintain_partitions, pending
from ecosystem_shared.retention import drop_expired_partitions, retention_cutoff

# 02-analytics.sql and 03-digest.sql: the schema an ecosystem deployed before partitioning has.
PLAIN_SCHEMA = [path for path in shared_migrations() if path.name < "06"]
INDEXES_PER_PARTITION = 5  # primary key, telegram_id, (bot_name, event_type), created_at, GIN


def month_start(moment: datetime, months: int = 0) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def partition_of(moment: datetime) -> str:
    return f"analytics_events_{moment:%Y_%m}"


@pytest.fixture
def conn(db_conn: asyncpg.Connection) -> asyncpg.Connection:
    return db_conn  # the test kit's connection, under the name these tests use


async def partitions(conn: asyncpg.Connection) -> dict[str, int]:
    """Partition name -> number of its indexes."""
    rows = await conn.fetch(
        "SELECT c.relname AS name, (SELECT count(*) FROM pg_index x WHERE x.indrelid = c.oid) AS n"
        " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'shared.analytics_events'::regclass"
    )
    return {row["name"]: row["n"] for row in rows}


async def test_a_new_database_gets_the_partitioned_table(conn: asyncpg.Connection) -> None:
    kind = await conn.fetchval(
        "SELECT relkind FROM pg_class WHERE oid = 'shared.analytics_events'::regclass"
    )
    assert kind == b"p"
    assert await conn.fetchval("SELECT to_regclass('shared.analytics_events_partitioned')") is None
    assert not await pending(conn)
    column = await conn.fetchrow(
        "SELECT is_nullable FROM information_schema.columns"
        " WHERE table_schema = 'shared' AND table_name = 'analytics_events'"
        " AND column_name = 'created_at'"
    )
    assert column["is_nullable"] == "NO"


async def test_partitions_ahead_with_every_index(conn: asyncpg.Connection) -> None:
    now = datetime.now(UTC)
    found = await partitions(conn)
    expected = {partition_of(month_start(now, ahead)) for ahead in range(4)}
    assert expected | {"analytics_events_default"} == set(found)
    assert set(found.values()) == {INDEXES_PER_PARTITION}
    gin = await conn.fetchval(
        "SELECT count(*) FROM pg_indexes WHERE schemaname = 'shared'"
        " AND tablename LIKE 'analytics_events_%' AND indexdef LIKE '%USING gin (event_data)%'"
    )
    assert gin == len(found)
    assert await maintain_partitions(conn) == []  # idempotent
    made = await maintain_partitions(conn, months_ahead=5)
    assert made == [partition_of(month_start(now, 4)), partition_of(month_start(now, 5))]


async def test_events_of_any_date_are_stored(conn: asyncpg.Connection) -> None:
    now = datetime.now(UTC)
    await conn.execute("INSERT INTO shared.users (telegram_id, first_name) VALUES (1, 'A')")
    dates = {
        "today": now,
        "three years ago": now - timedelta(days=3 * 365),
        "next month": month_start(now, 1) + timedelta(days=3),
    }
    rows = [(1, "Bot", name, {"n": 1}, moment) for name, moment in dates.items()]
    await write_batch(conn, list(rows), timeout=10)  # the analytics writer's COPY
    placed = dict(
        await conn.fetch("SELECT event_type, tableoid::regclass::text FROM shared.analytics_events")
    )
    assert placed == {
        "today": f"shared.{partition_of(now)}",
        "three years ago": "shared.analytics_events_default",
        "next month": f"shared.{partition_of(month_start(now, 1))}",
    }
    # The default partition's month gets its own partition, the row moved into it.
    old = dates["three years ago"]
    assert await maintain_partitions(conn) == [partition_of(old)]
    assert await conn.fetchval("SELECT count(*) FROM shared.analytics_events_default") == 0
    row = await conn.fetchrow(
        "SELECT tableoid::regclass::text AS part, event_data FROM shared.analytics_events"
        " WHERE event_type = 'three years ago'"
    )
    assert (row["part"], row["event_data"]) == (f"shared.{partition_of(old)}", {"n": 1})
    assert (await partitions(conn))[partition_of(old)] == INDEXES_PER_PARTITION
    # Another event of that month now lands in its partition directly.
    await write_batch(conn, [(1, "Bot", "late import", None, old + timedelta(hours=1))], timeout=10)
    assert (
        await conn.fetchval(
            "SELECT tableoid::regclass::text FROM shared.analytics_events"
            " WHERE event_type = 'late import'"
        )
        == f"shared.{partition_of(old)}"
    )
    assert await conn.fetchval("SELECT count(DISTINCT id) FROM shared.analytics_events") == 4


async def test_concurrent_maintenance_creates_each_partition_once(database_url: str) -> None:
    conns = [await asyncpg.connect(database_url) for _ in range(3)]
    try:
        old = datetime(2020, 2, 10, tzinfo=UTC)
        await conns[0].execute(
            "INSERT INTO shared.analytics_events (bot_name, event_type, created_at)"
            " SELECT 'Bot', 'import', $1::timestamptz + g * interval '1 day'"
            " FROM generate_series(0, 59) g",
            old,
        )
        results = await asyncio.gather(*(maintain_partitions(c, months_ahead=6) for c in conns))
        made = sorted(name for result in results for name in result)
        assert made == sorted(
            {
                partition_of(old),
                partition_of(month_start(old, 1)),
                partition_of(month_start(old, 2)),
            }
            | {partition_of(month_start(datetime.now(UTC), n)) for n in (4, 5, 6)}
        )
        assert await conns[0].fetchval("SELECT count(*) FROM shared.analytics_events") == 60
        assert await conns[0].fetchval("SELECT count(*) FROM shared.analytics_events_default") == 0
    finally:
        for c in conns:
            await c.close()


# -- the switch from a deployed plain table ---------------------------------------------------


async def plain_database(url: str, events: int) -> None:
    """The schema before partitioning, with ``events`` events over 400 days (some NULL times,
    some anonymous) from 1,000 users, and a gap in the ids."""
    conn = await asyncpg.connect(url)
    try:
        await apply_migrations(conn, PLAIN_SCHEMA)
        await conn.execute(
            "INSERT INTO shared.users (telegram_id, first_name)"
            " SELECT g, 'U' || g FROM generate_series(1, 1000) g"
        )
        await conn.execute(
            """
            INSERT INTO shared.analytics_events
                (telegram_id, bot_name, event_type, event_data, created_at)
            SELECT CASE WHEN g % 10 = 0 THEN NULL ELSE g % 1000 + 1 END, 'Bot ' || g % 3,
                   (ARRAY['user_start', 'photo_sent', 'command_used'])[g % 3 + 1],
                   jsonb_build_object('count', g % 5),
                   CASE WHEN g % 1000 = 7 THEN NULL
                        ELSE now() - (g % 400) * interval '1 day'
                             - (g % 86400) * interval '1 second' END
            FROM generate_series(1, $1) g
            """,
            events,
        )
        await conn.execute("DELETE FROM shared.analytics_events WHERE id BETWEEN 100 AND 150")
    finally:
        await conn.close()


async def snapshot(conn: asyncpg.Connection) -> tuple[int, int, int, int]:
    """count, distinct ids, sum of ids, count of non-null times (equal before and after)."""
    row = await conn.fetchrow(
        "SELECT count(*), count(DISTINCT id), sum(id), count(created_at)"
        " FROM shared.analytics_events"
    )
    return tuple(int(value) for value in row)  # type: ignore[return-value]


async def test_switch_keeps_every_event_once_while_writing(
    empty_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await plain_database(empty_database_url, 120_000)
    conn = await asyncpg.connect(empty_database_url)
    await configure_connection(conn)
    count, distinct, id_sum, _ = await snapshot(conn)
    db = Database(empty_database_url, migrations=shared_migrations())
    await db.start()  # applies 06: builds the partitioned table, leaves the copy pending
    assert await pending(conn)
    writer = Analytics(db, "Writer", flush_seconds=0.01, batch_size=50)
    await writer.start()
    stop = asyncio.Event()

    async def write() -> int:
        written = 0
        while not stop.is_set():
            await writer.track_event(written % 1000 + 1, "during_switch", {"n": written})
            written += 1
            await asyncio.sleep(0.001)
        return written

    task = asyncio.create_task(write())
    try:
        with caplog.at_level(logging.INFO):
            # Small batches and tail: several rounds while the writer adds rows.
            report = await finish_partitioning(conn, batch=7_000, swap_tail=500)
        assert report is not None
        await asyncio.sleep(0.3)  # writes go on into the partitioned table
    finally:
        stop.set()
        written = await task
        await writer.flush()
        await writer.close()
        await db.close()
    try:
        assert writer.dropped == 0 and writer.pending == 0
        assert not await pending(conn)
        assert (
            await conn.fetchval(
                "SELECT relkind FROM pg_class WHERE oid = 'shared.analytics_events'::regclass"
            )
            == b"p"
        )
        after = await snapshot(conn)
        new_ids = await conn.fetchval(
            "SELECT sum(id) FROM shared.analytics_events WHERE event_type = 'during_switch'"
        )
        assert after[0] == count + written and after[0] == after[1]  # each event once
        assert after[2] == id_sum + new_ids  # old ids kept
        assert after[3] == after[0]  # created_at NOT NULL (NULLs got the copy's time)
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM shared.analytics_events WHERE event_type = 'during_switch'"
            )
            == written
        )
        state = await conn.fetchrow("SELECT * FROM shared.analytics_events_migration")
        assert state["finished_at"] is not None and state["writes_blocked_ms"] < 5000
        assert report.tail_rows == state["tail_rows"]
        assert distinct == count
        # The swap's table comment (06) is replaced by 11-schema-comments.sql's English one,
        # and the column descriptions written while the copy was pending came along.
        descriptions = await conn.fetchrow(
            "SELECT obj_description(attrelid) AS events,"
            " col_description(attrelid, attnum) AS bot_name"
            " FROM pg_attribute"
            " WHERE attrelid = 'shared.analytics_events'::regclass AND attname = 'bot_name'"
        )
        assert descriptions["events"] == (
            "Events of every bot of the ecosystem (partitioned by month of created_at, UTC)"
        )
        assert descriptions["bot_name"].startswith("Name of the bot")
        # The sequence survived the plain table and still feeds the ids.
        next_id = await conn.fetchval("SELECT nextval('shared.analytics_events_id_seq')")
        assert next_id > await conn.fetchval("SELECT max(id) FROM shared.analytics_events")
        # Idempotent: nothing left to do.
        assert await finish_partitioning(conn) is None
        assert "switched to the partitioned table" in caplog.text
    finally:
        await conn.close()


async def test_only_one_copier_at_a_time(empty_database_url: str) -> None:
    await plain_database(empty_database_url, 30_000)
    conns = [await asyncpg.connect(empty_database_url) for _ in range(3)]
    try:
        await apply_migrations(conns[0], shared_migrations())
        reports = await asyncio.gather(*(finish_partitioning(c, batch=5_000) for c in conns))
        assert sum(report is not None for report in reports) == 1
        count, distinct, _, _ = await snapshot(conns[0])
        assert count == distinct == 30_000 - 51
    finally:
        for c in conns:
            await c.close()


# -- retention --------------------------------------------------------------------------------


async def test_retention_drops_only_old_partitions_after_a_backup(
    conn: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime.now(UTC)
    await conn.execute(
        "INSERT INTO shared.analytics_events (bot_name, event_type, created_at)"
        " SELECT 'Bot', 'e', $1::timestamptz - g * interval '1 day'"
        " FROM generate_series(0, 200) g",
        now,
    )
    await maintain_partitions(conn)
    await conn.execute(
        "SELECT shared.analytics_rollup_day('UTC', $1)", (now - timedelta(days=150)).date()
    )
    before = await partitions(conn)
    cutoff = retention_cutoff(3, now)
    expired = sorted(
        name for name in before
        if name != "analytics_events_default" and name[17:] < f"{cutoff:%Y_%m}"
    )  # fmt: skip
    assert len(expired) >= 3
    with caplog.at_level(logging.WARNING):
        assert await drop_expired_partitions(conn, 3, bot_name="Bot") == []
    assert "no backup started after" in caplog.text
    assert await partitions(conn) == before
    # A backup that began before the oldest partition ended covers none of them.
    first_end = month_start(datetime.strptime(expired[0][17:], "%Y_%m").replace(tzinfo=UTC), 1)
    await conn.execute(
        "INSERT INTO shared.backups (started_at, file) VALUES ($1, 'early.dump')",
        first_end - timedelta(hours=1),
    )
    assert await drop_expired_partitions(conn, 3, bot_name="Bot") == []
    # One that began after the second ended allows the two oldest.
    second_end = month_start(first_end, 1)
    await conn.execute(
        "INSERT INTO shared.backups (started_at, file) VALUES ($1, 'later.dump')",
        second_end + timedelta(minutes=5),
    )
    dropped = await drop_expired_partitions(conn, 3, bot_name="Bot")
    assert [d.partition for d in dropped] == expired[:2]
    assert all(d.events > 0 for d in dropped)
    await conn.execute("INSERT INTO shared.backups (started_at, file) VALUES (now(), 'now.dump')")
    dropped += await drop_expired_partitions(conn, 3, bot_name="Bot")
    assert [d.partition for d in dropped] == expired
    assert await drop_expired_partitions(conn, 3, bot_name="Bot") == []  # never twice
    log = await conn.fetch("SELECT partition_name, events FROM shared.analytics_retention_log")
    assert sorted(row["partition_name"] for row in log) == expired
    remaining = await partitions(conn)
    assert set(remaining) == set(before) - set(expired)
    oldest_kept = await conn.fetchval("SELECT min(created_at) FROM shared.analytics_events")
    assert oldest_kept >= cutoff
    # Rollups stay.
    assert await conn.fetchval("SELECT count(*) FROM shared.analytics_rollup_days") == 1
    assert f"dropped {expired[0]}" in caplog.text


async def test_retention_is_done_by_one_bot_a_day(database_url: str) -> None:
    now = datetime.now(UTC)
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(
            "INSERT INTO shared.analytics_events (bot_name, event_type, created_at)"
            " SELECT 'Bot', 'e', $1::timestamptz - g * interval '1 day'"
            " FROM generate_series(0, 120) g",
            now,
        )
        await maintain_partitions(admin)
        await admin.execute(
            "INSERT INTO shared.backups (started_at, file) VALUES (now(), 'x.dump')"
        )
        dbs = [Database(database_url, migrations=shared_migrations()) for _ in range(3)]
        for db in dbs:
            await db.start()
        bots = [
            AnalyticsMaintenance(db, bot_name=f"Bot {i}", timezone="UTC", retention_months=1)
            for i, db in enumerate(dbs)
        ]
        try:
            await asyncio.gather(*(bot.run() for bot in bots))
        finally:
            for db in dbs:
                await db.close()
        runs = await admin.fetch(
            "SELECT bot_name, sent_at FROM shared.digest_runs WHERE job = 'analytics_retention'"
        )
        assert len(runs) == 1 and runs[0]["sent_at"] is not None
        log = await admin.fetch("SELECT DISTINCT bot_name FROM shared.analytics_retention_log")
        assert [row["bot_name"] for row in log] == [runs[0]["bot_name"]]
        assert await admin.fetchval("SELECT min(created_at) FROM shared.analytics_events") >= (
            retention_cutoff(1, now)
        )
    finally:
        await admin.close()
