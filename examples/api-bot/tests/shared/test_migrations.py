"""Migrations against a real PostgreSQL: idempotent, concurrent-safe, all-or-nothing."""

import asyncio
import logging
from pathlib import Path

import asyncpg
import pytest

from ecosystem_shared.exceptions import MigrationError
from ecosystem_shared.migrations import apply_migrations, migration_name, shared_migrations

SHARED_NAMES = [migration_name(path) for path in shared_migrations()]


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
        assert comment == "Глобальный реестр пользователей из всех ботов экосистемы"
        not_null = await conn.fetchval(
            "SELECT is_nullable FROM information_schema.columns"
            " WHERE table_schema = 'shared' AND table_name = 'users' AND column_name = 'first_name'"
        )
        assert not_null == "NO"
    finally:
        await conn.close()
