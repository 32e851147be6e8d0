"""Migrations against a real PostgreSQL: idempotent, concurrent-safe, all-or-nothing."""

import asyncio
import hashlib
import logging
from pathlib import Path

import asyncpg
import pytest

from ecosystem_shared.exceptions import MigrationError
from ecosystem_shared.migrations import apply_migrations, migration_name, shared_migrations

SHARED_NAMES = [migration_name(path) for path in shared_migrations()]
# SHA-256 of the shared files as released (0.2.0), by number: deployed databases hold these in
# shared.schema_migrations, so the files must never change (a changed file is not re-run).
RELEASED = {
    "02": "b65ff1599fa8dc6d136785d7e23d42052a7c0086b76e8cd76888c336315afe78",
    "03": "02025bec9f25e7818cb2a0b6e966ddb9d895c988a61d496a5c64ccaa3b038fe8",
    "04": "5483ed8691a40b4da746c1da9b9a3ce444b4b5da5931904d97d49b35a1454bd1",
    "05": "6aae7cf6c2ecfdf89ee0757c702a6a10e8ffa590d7aeeb0f8d3e8b8b9d1f5677",
    "06": "b95895dc6705d2acb7b8a9dd9468b050ec2b803b5c7b6074806c93212629bdb0",
    "07": "851c60d6de8a6d1f2bbc2d0e7b3961fa4edddcf4c71e0d2ab14ccdd8c372f175",
    "08": "9d8fde4761ff4ee80e9f20fa38e0417dd6232687530bf4cc0d4e23e76760fb70",
}
# Every description of the shared schema's tables and columns.
SCHEMA_COMMENTS = """
SELECT c.relname || coalesce('.' || a.attname, '') AS target, d.description
FROM pg_description d
JOIN pg_class c ON d.classoid = 'pg_class'::regclass AND c.oid = d.objoid
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'shared'
LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = d.objsubid AND d.objsubid > 0
"""


def test_shared_files_in_order() -> None:
    names = [path.name for path in shared_migrations()]
    assert names[:2] == ["02-analytics.sql", "03-digest.sql"]
    assert names == sorted(names)
    assert SHARED_NAMES[0] == "ecosystem_shared/02-analytics.sql"


async def test_apply_is_idempotent(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await apply_migrations(conn, shared_migrations()) == SHARED_NAMES
        assert await apply_migrations(conn, shared_migrations()) == []
        tables = {
            row["table_name"]
            for row in await conn.fetch(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'shared'"
            )
        }
        assert {"users", "analytics_events", "digest_runs", "schema_migrations"} <= tables
        recorded = await conn.fetch("SELECT name, checksum FROM shared.schema_migrations")
        assert sorted(r["name"] for r in recorded) == sorted(SHARED_NAMES)
        assert all(len(r["checksum"]) == 64 for r in recorded)
    finally:
        await conn.close()


async def test_three_concurrent_runs_on_an_empty_database(empty_database_url: str) -> None:
    conns = [await asyncpg.connect(empty_database_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(apply_migrations(c, shared_migrations()) for c in conns))
        applied = [name for result in results for name in result]
        assert sorted(applied) == sorted(SHARED_NAMES)  # every file exactly once
        count = await conns[0].fetchval("SELECT count(*) FROM shared.schema_migrations")
        assert count == len(SHARED_NAMES)
    finally:
        for conn in conns:
            await conn.close()


async def test_failing_file_rolls_back_everything(empty_database_url: str, tmp_path: Path) -> None:
    good = tmp_path / "pkg" / "migrations" / "10-good.sql"
    good.parent.mkdir(parents=True)
    good.write_text("CREATE TABLE good_table (id int);")
    bad = good.with_name("11-bad.sql")
    bad.write_text("CREATE TABLE broken (;")
    conn = await asyncpg.connect(empty_database_url)
    try:
        with pytest.raises(MigrationError, match=r"pkg/11-bad\.sql"):
            await apply_migrations(conn, [*shared_migrations(), good, bad])
        assert await conn.fetchval("SELECT to_regclass('good_table')") is None
        assert await conn.fetchval("SELECT to_regclass('shared.users')") is None
        bad.write_text("CREATE TABLE fixed_table (id int);")
        applied = await apply_migrations(conn, [*shared_migrations(), good, bad])
        assert applied == [*SHARED_NAMES, "pkg/10-good.sql", "pkg/11-bad.sql"]
    finally:
        await conn.close()


async def test_changed_file_is_reported_not_rerun(
    empty_database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "bot" / "migrations" / "10-counter.sql"
    path.parent.mkdir(parents=True)
    path.write_text("CREATE TABLE counter (n int); INSERT INTO counter VALUES (1);")
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await apply_migrations(conn, [path]) == ["bot/10-counter.sql"]
        path.write_text("CREATE TABLE counter (n int); INSERT INTO counter VALUES (2);")
        with caplog.at_level(logging.WARNING):
            assert await apply_migrations(conn, [path]) == []
        assert "changed after it was applied" in caplog.text
        assert await conn.fetchval("SELECT count(*) FROM counter") == 1
    finally:
        await conn.close()


async def test_files_work_as_plain_init_scripts(empty_database_url: str) -> None:
    """docker-entrypoint-initdb.d runs the files as they are, in name order; twice is harmless,
    and the bots' migration run afterwards still succeeds."""
    conn = await asyncpg.connect(empty_database_url)
    try:
        for _ in range(2):
            for path in shared_migrations():
                await conn.execute(path.read_text(encoding="utf-8"))
        assert await apply_migrations(conn, shared_migrations()) == SHARED_NAMES
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'shared'"
        )
        by_name = {row["indexname"]: row["indexdef"] for row in indexes}
        assert "USING gin (event_data)" in by_name["idx_analytics_event_data"]
        expected = {"idx_users_username", "idx_users_first_seen", "idx_analytics_telegram_id",
                    "idx_analytics_bot_event", "idx_analytics_created_at"}  # fmt: skip
        assert expected <= by_name.keys()
        comment = await conn.fetchval("SELECT obj_description('shared.users'::regclass)")
        assert comment == "Every user of any bot of the ecosystem, one row per Telegram user"
        not_null = await conn.fetchval(
            "SELECT is_nullable FROM information_schema.columns"
            " WHERE table_schema = 'shared' AND table_name = 'users' AND column_name = 'first_name'"
        )
        assert not_null == "NO"
    finally:
        await conn.close()


def test_released_files_are_unchanged() -> None:
    on_disk = {path.name[:2]: path for path in shared_migrations()}
    for number, checksum in RELEASED.items():
        assert hashlib.sha256(on_disk[number].read_bytes()).hexdigest() == checksum, number


async def test_a_database_of_the_last_release_gets_english_descriptions(
    empty_database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A database the 0.2.0 files migrated (Russian descriptions from 02) starts with this code:
    no file reported changed, only the new files run, and every description is in English."""
    released = [path for path in shared_migrations() if path.name[:2] in RELEASED]
    conn = await asyncpg.connect(empty_database_url)
    try:
        await apply_migrations(conn, released)
        before = dict(await conn.fetch(SCHEMA_COMMENTS))
        assert before["users"] == "Глобальный реестр пользователей из всех ботов экосистемы"
        with caplog.at_level(logging.WARNING):
            applied = await apply_migrations(conn, shared_migrations())
        new = [
            f"ecosystem_shared/{p.name}" for p in shared_migrations() if p.name[:2] not in RELEASED
        ]
        assert applied == new and "ecosystem_shared/11-schema-comments.sql" in new
        assert "changed after it was applied" not in caplog.text
        after = dict(await conn.fetch(SCHEMA_COMMENTS))
        assert before.keys() <= after.keys()  # none dropped
        assert all(text.isascii() for text in after.values()), after
        assert after["users.telegram_id"] == "Telegram user id"
        assert after["analytics_events"] == (
            "Events of every bot of the ecosystem (partitioned by month of created_at, UTC)"
        )
        assert after["analytics_events.bot_name"].startswith("Name of the bot")
    finally:
        await conn.close()
