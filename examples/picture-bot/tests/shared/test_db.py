"""Database: graceful degradation and reconnects against real PostgreSQL servers."""

import asyncio
import logging
import os
import subprocess
import sys

import asyncpg
import pytest

from ecosystem_shared.db import Database, describe_dsn
from ecosystem_shared.exceptions import DatabaseUnavailable
from ecosystem_shared.migrations import shared_migrations
from ecosystem_shared.testing.postgres import PostgresServer, free_port
from ecosystem_shared.testing.waiting import wait_until


def db_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "ecosystem_shared.db" and r.levelno >= logging.WARNING
    ]


def test_describe_dsn_hides_credentials() -> None:
    assert describe_dsn("postgresql://bot:s3cret@db:5432/ecosystem") == "db:5432/ecosystem"
    assert describe_dsn("host=db password=s3cret") == "database"
    assert "s3cret" not in describe_dsn("postgres://u:s3cret@[::1]/x?sslmode=require")


async def test_no_dsn_is_disabled_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    database = Database(None)
    with caplog.at_level(logging.INFO):
        await database.start()
    assert not database.enabled
    assert not database.available
    assert len(db_warnings(caplog)) == 1
    with pytest.raises(DatabaseUnavailable):
        async with database.acquire():
            pass
    await database.close()


async def test_connects_migrates_and_decodes_jsonb(empty_database_url: str) -> None:
    db = Database(empty_database_url, migrations=shared_migrations())
    await db.start()
    try:
        assert db.enabled and db.available
        async with db.acquire() as conn:
            assert await conn.fetchval("SELECT count(*) FROM shared.schema_migrations") == len(
                shared_migrations()
            )
            value = {"ключ": [1, 2.5, None, True], "nested": {"s": "x"}}
            assert await conn.fetchval("SELECT $1::jsonb", value) == value
            assert await conn.fetchval("SELECT '{\"a\": 1}'::json") == {"a": 1}
    finally:
        await db.close()


async def test_bad_sql_passes_through_and_keeps_the_database(db: Database) -> None:
    with pytest.raises(asyncpg.UndefinedTableError):
        async with db.acquire() as conn:
            await conn.execute("SELECT * FROM no_such_table")
    assert db.available


async def test_busy_pool_is_not_a_lost_database(database_url: str) -> None:
    """An acquire that times out because every connection is busy is not a lost server:
    the database stays available and its pool is not thrown away."""
    database = Database(database_url, min_size=1, max_size=1, migrations=shared_migrations())
    await database.start()
    try:
        async with database.acquire() as busy:
            with pytest.raises(TimeoutError):
                async with database.acquire(timeout=0.2):
                    pass
            assert database.available
            assert await busy.fetchval("SELECT 1") == 1
        async with database.acquire(timeout=5) as conn:
            assert await conn.fetchval("SELECT 2") == 2
    finally:
        await database.close()


@pytest.mark.slow
async def test_unreachable_at_start_connects_when_server_appears(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    dsn = f"postgresql://postgres:hunter2secret@127.0.0.1:{port}/postgres"
    database = Database(dsn, migrations=shared_migrations(), reconnect_seconds=0.2)
    connected: list[bool] = []

    async def on_connected() -> None:
        connected.append(True)

    database.on_connected.append(on_connected)
    server = PostgresServer(port=port)
    try:
        with caplog.at_level(logging.DEBUG):
            await asyncio.wait_for(database.start(), 10)  # must not hang or raise
            assert not database.available
            with pytest.raises(DatabaseUnavailable):
                async with database.acquire():
                    pass
            await asyncio.sleep(0.6)  # a few failed retries: still one warning
            warnings = db_warnings(caplog)
            assert len(warnings) == 1, warnings
            assert f"127.0.0.1:{port}/postgres" in warnings[0]
            await asyncio.to_thread(server.start)
            await wait_until(lambda: _true(database.available), timeout=15, what="reconnect")
        assert connected == [True]
        async with database.acquire() as conn:
            assert await conn.fetchval("SELECT to_regclass('shared.users')::text") == "shared.users"
        assert "hunter2secret" not in caplog.text
    finally:
        await database.close()
        await asyncio.to_thread(server.cleanup)


async def _true(value: bool) -> bool:
    return value


@pytest.mark.slow
async def test_server_restart_is_survived(own_server: PostgresServer) -> None:
    database = Database(own_server.url, max_size=3, reconnect_seconds=0.2)
    connected: list[bool] = []

    async def on_connected() -> None:
        connected.append(True)

    database.on_connected.append(on_connected)
    await database.start()
    try:
        async with database.acquire() as conn:
            assert await conn.fetchval("SELECT 1") == 1
        await asyncio.to_thread(own_server.stop)
        with pytest.raises(DatabaseUnavailable):
            async with database.acquire() as conn:
                await conn.fetchval("SELECT 1")
        assert not database.available
        with pytest.raises(DatabaseUnavailable):  # fails fast while down
            async with database.acquire():
                pass
        await asyncio.to_thread(own_server.start)
        await wait_until(lambda: _true(database.available), timeout=15, what="reconnect")
        async with database.acquire() as conn:
            assert await conn.fetchval("SELECT 2") == 2
        assert connected == [True, True]
    finally:
        await database.close()


async def test_killed_connection_recovers_quickly(db: Database, database_url: str) -> None:
    async with db.acquire() as conn:
        pid = conn.get_server_pid()
    admin = await asyncpg.connect(database_url)
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    # Depending on timing the pool notices the dead connection itself, or the query fails:
    # then the caller sees DatabaseUnavailable (never a raw asyncpg error).
    try:
        async with db.acquire() as conn:
            await conn.fetchval("SELECT 1")
    except DatabaseUnavailable:
        pass
    await wait_until(lambda: _true(db.available), timeout=5, what="recovery")
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT 3") == 3
        assert conn.get_server_pid() != pid


async def test_close_stops_reconnecting() -> None:
    database = Database(f"postgresql://127.0.0.1:{free_port()}/x", reconnect_seconds=0.05)
    await database.start()
    await database.close()
    assert not database.available
    tasks = [t for t in asyncio.all_tasks() if t.get_name() == "database-reconnect"]
    assert tasks == []


@pytest.mark.slow
def test_command_runs_with_a_throwaway_server(request: pytest.FixtureRequest) -> None:
    """``python -m ecosystem_shared.testing.postgres -- cmd`` (what CI of the template uses):
    cmd gets TEST_DATABASE_URL of a fresh server, its exit status is passed on, and the server
    is gone afterwards."""
    script = (
        "import asyncio, os, sys, asyncpg\n"
        "async def main():\n"
        "    conn = await asyncpg.connect(os.environ['TEST_DATABASE_URL'])\n"
        "    print('URL', os.environ['TEST_DATABASE_URL'], await conn.fetchval('SELECT 41 + 1'))\n"
        "    await conn.close()\n"
        "asyncio.run(main())\n"
        "sys.exit(3)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"TEST_DATABASE_URL", "DATABASE_URL"}}
    env["PYTHONPATH"] = str(request.config.rootpath)
    command = [sys.executable, "-m", "ecosystem_shared.testing.postgres", "--"]
    result = subprocess.run(
        [*command, sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    [line] = [line for line in result.stdout.splitlines() if line.startswith("URL ")]
    _, url, answer = line.split()
    assert answer == "42" and url.startswith("postgresql://postgres@127.0.0.1:")

    async def connect() -> None:
        await asyncpg.connect(url, timeout=5)

    with pytest.raises(OSError):  # stopped and removed
        asyncio.run(connect())
