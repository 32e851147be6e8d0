"""SQL migrations applied by every bot at start: the shared schema, then the bot's own files.

Several bot processes may start at once against one database, so the whole run is one
transaction holding a transaction-level advisory lock (a session lock would be released early:
the pool runs ``pg_advisory_unlock_all()`` when a connection goes back). Applied files are
recorded in ``shared.schema_migrations`` and never run twice. Files must be plain SQL that can
run in a transaction (no ``CREATE INDEX CONCURRENTLY``) and should be idempotent, because the
same files also serve as ``docker-entrypoint-initdb.d`` scripts.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from ecosystem_shared.exceptions import MigrationError

logger = logging.getLogger(__name__)

SQL_DIR = Path(__file__).resolve().parent / "sql"

# Any constant works as long as every bot uses the same one: "ecosystem" in ASCII.
ADVISORY_LOCK_KEY = 0x65636F73797374

_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS shared;
CREATE TABLE IF NOT EXISTS shared.schema_migrations (
    name TEXT PRIMARY KEY,
    checksum TEXT,
    applied_at TIMESTAMPTZ DEFAULT now()
);
"""


def shared_migrations() -> list[Path]:
    """The shared schema's SQL files in the order they must run (by name)."""
    return sorted(SQL_DIR.glob("*.sql"))


def migration_name(path: Path) -> str:
    """Key of a file in ``shared.schema_migrations``: ``<package>/<file name>``.

    The package directory is part of the key so that two bots sharing one database may both
    have, say, ``10-crm.sql`` with different contents (``picture_bot/migrations/10-crm.sql``
    -> ``picture_bot/10-crm.sql``; ``ecosystem_shared/sql/02-analytics.sql`` ->
    ``ecosystem_shared/02-analytics.sql``).
    """
    return f"{path.resolve().parent.parent.name}/{path.name}"


def _read(path: Path) -> tuple[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise MigrationError(f"cannot read migration {path}: {error}") from error
    return text, hashlib.sha256(text.encode("utf-8")).hexdigest()


async def apply_migrations(conn: asyncpg.Connection, files: Sequence[Path]) -> list[str]:
    """Run every file not yet recorded, in the given order; return the names applied now.

    All or nothing: a failing file rolls back the whole run (raised as
    :class:`MigrationError`, connection errors propagate unchanged).
    """
    scripts = [(migration_name(path), *_read(path)) for path in files]
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", ADVISORY_LOCK_KEY)
        await conn.execute(_BOOTSTRAP)
        rows = await conn.fetch("SELECT name, checksum FROM shared.schema_migrations")
        done = {row["name"]: row["checksum"] for row in rows}
        for name, sql, checksum in scripts:
            if name in done:
                if done[name] != checksum:
                    # Editing an applied file does nothing: say so instead of failing the bot.
                    logger.warning("Migration %s changed after it was applied; not re-run", name)
                continue
            try:
                await conn.execute(sql)
            except asyncpg.PostgresError as error:
                if isinstance(error, asyncpg.PostgresConnectionError):
                    raise
                raise MigrationError(f"migration {name} failed: {error}") from error
            await conn.execute(
                "INSERT INTO shared.schema_migrations (name, checksum) VALUES ($1, $2)",
                name,
                checksum,
            )
            applied.append(name)
            done[name] = checksum
    if applied:
        logger.info("Applied migrations: %s", ", ".join(applied))
    return applied
