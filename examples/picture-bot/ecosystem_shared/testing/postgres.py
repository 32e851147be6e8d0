"""Real PostgreSQL for tests: an existing server, or a throwaway one started from the binaries.

Order: ``TEST_DATABASE_URL``, then ``DATABASE_URL``, then a temporary cluster started with
``initdb``/``pg_ctl`` found on PATH or under ``/usr/lib/postgresql/*/bin`` (run as the
``postgres`` user when the tests run as root, because PostgreSQL refuses root). Without any of
them the tests fail with a message saying what to install or set: they are never skipped.
Each test gets its own database (``database_url``), dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio

from ecosystem_shared.db import Database, configure_connection, describe_dsn
from ecosystem_shared.migrations import apply_migrations, shared_migrations

__all__ = [
    "PostgresServer",
    "database_url",
    "db",
    "db_conn",
    "find_pg_bin",
    "own_server",
    "postgres_url",
    "with_database",
]

ENV_VARS = ("TEST_DATABASE_URL", "DATABASE_URL")
T = TypeVar("T")


def find_pg_bin() -> Path | None:
    """Directory holding ``initdb`` and ``pg_ctl`` (PATH first, newest version otherwise)."""
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return versions[-1].parent if versions else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """A throwaway cluster: ``start()``, ``stop()`` (and start again, same port), ``cleanup()``."""

    def __init__(self, bin_dir: Path | None = None, port: int | None = None) -> None:
        found = bin_dir or find_pg_bin()
        if found is None:
            raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found")
        self.bin_dir = found
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="ecosystem-pg-"))
        self.data_dir = self.root / "data"
        self.log_file = self.root / "server.log"
        self._as_root = hasattr(os, "geteuid") and os.geteuid() == 0
        if self._as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self._initialized = False
        self.running = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}{log[-2000:]}"
            )

    def start(self) -> None:
        if not self._initialized:
            self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust",
                      "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
            self._initialized = True
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            " -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-o", options,
                  "-w", "-t", "60", "start")  # fmt: skip
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
            self.running = False

    def cleanup(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion in a fresh loop on another thread (safe inside a running loop)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = error

    thread = threading.Thread(target=target, name="postgres-admin")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` (user, password, host and options kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a PostgreSQL server for the whole test session (see the module docstring)."""
    for var in ENV_VARS:
        if os.environ.get(var):
            yield os.environ[var]
            return
    if find_pg_bin() is None:
        pytest.fail(
            "No PostgreSQL for the tests: set TEST_DATABASE_URL (e.g. postgresql://user:pw@host/db)"
            " or install the server binaries (Debian/Ubuntu: apt-get install postgresql)",
            pytrace=False,
        )
    try:
        server = PostgresServer()
        server.start()
    except (RuntimeError, OSError, KeyError, subprocess.SubprocessError) as error:
        pytest.fail(f"Could not start a throwaway PostgreSQL: {error}", pytrace=False)
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture
def database_url(postgres_url: str) -> Iterator[str]:
    """A fresh, empty database for one test; dropped (even with open connections) after it."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    try:
        run_sync(_admin(postgres_url, f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        pytest.fail(
            f"Cannot create a test database on {describe_dsn(postgres_url)}"
            f" (TEST_DATABASE_URL / DATABASE_URL, or the throwaway server): {error}",
            pytrace=False,
        )
    try:
        yield with_database(postgres_url, name)
    finally:
        run_sync(_admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest_asyncio.fixture
async def db_conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test's database with the shared schema applied."""
    conn = await asyncpg.connect(database_url)
    try:
        await configure_connection(conn)
        await apply_migrations(conn, shared_migrations())
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
