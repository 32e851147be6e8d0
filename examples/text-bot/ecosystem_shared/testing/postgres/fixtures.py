"""The pytest fixtures: a server per session, a migrated template, a database per test."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import NoReturn
from urllib.parse import urlsplit

import asyncpg
import pytest
import pytest_asyncio

from ecosystem_shared.db import Database, configure_connection, describe_dsn
from ecosystem_shared.migrations import shared_migrations
from ecosystem_shared.testing.postgres.admin import (
    create_database,
    drop_database,
    migrate,
    new_database_name,
    run_sync,
    with_database,
)
from ecosystem_shared.testing.postgres.copies import DatabaseCopies
from ecosystem_shared.testing.postgres.server import PostgresServer, running_server

__all__ = [
    "database_copies",
    "database_url",
    "db",
    "db_conn",
    "empty_database_url",
    "empty_databases",
    "migrated_template",
    "own_server",
    "postgres_url",
]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a PostgreSQL server for the whole test session (see the module docstring)."""
    try:
        with running_server() as url:
            yield url
    except (RuntimeError, OSError, KeyError, subprocess.SubprocessError) as error:
        pytest.fail(f"No PostgreSQL for the tests: {error}", pytrace=False)


def _cannot_create(postgres_url: str, error: BaseException) -> NoReturn:
    pytest.fail(
        f"Cannot create a test database on {describe_dsn(postgres_url)}"
        f" (TEST_DATABASE_URL / DATABASE_URL, or the throwaway server): {error}",
        pytrace=False,
    )


@contextlib.contextmanager
def _test_database(postgres_url: str, template: str | None) -> Iterator[str]:
    """A database for a (sync) fixture; a server that refuses it fails the test with why."""
    name = new_database_name()
    try:
        run_sync(create_database(postgres_url, name, template))
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        _cannot_create(postgres_url, error)
    try:
        yield with_database(postgres_url, name)
    finally:
        run_sync(drop_database(postgres_url, name))


@pytest.fixture(scope="session")
def migrated_template(postgres_url: str) -> Iterator[str]:
    """Name of a database with the shared schema, migrated once per session; tests get copies.

    Nobody stays connected to it (``CREATE DATABASE ... TEMPLATE`` refuses a template in use).
    """
    with _test_database(postgres_url, None) as url:
        run_sync(migrate(url))
        yield urlsplit(url).path.lstrip("/")


@pytest.fixture(scope="session")
def database_copies(postgres_url: str, migrated_template: str) -> Iterator[DatabaseCopies]:
    """Copies of :func:`migrated_template`, made ahead of the tests that use them."""
    copies = DatabaseCopies(postgres_url, migrated_template)
    yield copies
    copies.close()


@pytest.fixture(scope="session")
def empty_databases(postgres_url: str) -> Iterator[DatabaseCopies]:
    """Empty databases (copies of PostgreSQL's ``template1``), made ahead; few tests want one."""
    copies = DatabaseCopies(postgres_url, None, ahead=2, workers=1)
    yield copies
    copies.close()


def _database_from(copies: DatabaseCopies) -> Iterator[str]:
    try:
        url = copies.take()
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        _cannot_create(copies.server, error)
    yield url
    copies.give_back(url)


@pytest.fixture
def database_url(database_copies: DatabaseCopies) -> Iterator[str]:
    """A database of its own for one test with the shared schema already applied (a copy of
    :func:`migrated_template`, made in advance); dropped (even with open connections) after it."""
    yield from _database_from(database_copies)


@pytest.fixture
def empty_database_url(empty_databases: DatabaseCopies) -> Iterator[str]:
    """A fresh, empty database for one test (no schema at all); dropped after it."""
    yield from _database_from(empty_databases)


@pytest_asyncio.fixture
async def db_conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test's database (the shared schema is applied)."""
    conn = await asyncpg.connect(database_url)
    try:
        await configure_connection(conn)
        yield conn
    finally:
        await conn.close()


@pytest_asyncio.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A started :class:`Database` on the test's database, shared schema applied; closed after."""
    database = Database(database_url, migrations=shared_migrations(), reconnect_seconds=0.2)
    await database.start()
    yield database
    await database.close()


@pytest.fixture
def own_server() -> Iterator[PostgresServer]:
    """A private throwaway server the test may stop and start (the shared one must stay up)."""
    server = PostgresServer()
    try:
        server.start()
    except (RuntimeError, OSError, KeyError, subprocess.SubprocessError) as error:
        pytest.fail(f"Could not start a private PostgreSQL: {error}", pytrace=False)
    yield server
    server.cleanup()
