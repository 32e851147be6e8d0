"""The template's own analytics code the scale benchmark measures (imported from
``template/ecosystem_shared``, not installed), and its databases and connections."""

from __future__ import annotations

import contextlib
import importlib
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "template"))


def _shared(module: str) -> ModuleType:
    """A module of the template's ecosystem_shared (imported from template/, not installed)."""
    return importlib.import_module(f"ecosystem_shared.{module}")


stats_module = _shared("stats")
audience_module = _shared("audience")
# Its upsert_sights and before_events are swapped in step 4 (the cost of each).
store_module: Any = _shared("analytics_store")
hourly_module = _shared("hourly")
postgres = _shared("testing.postgres")
Analytics: Any = _shared("analytics").Analytics
Database: Any = _shared("db").Database
configure_connection: Any = _shared("db").configure_connection
apply_migrations: Any = _shared("migrations").apply_migrations
shared_migrations: Any = _shared("migrations").shared_migrations
finish_partitioning: Any = _shared("partitions").finish_partitioning
last_finished_day: Any = _shared("rollups").last_finished_day
roll_up_finished_days: Any = _shared("rollups").roll_up_finished_days
catch_up_first_sights: Any = _shared("rollups").catch_up_first_sights
refresh_recent_hours: Any = hourly_module.refresh_recent_hours

ZONE = "Europe/Moscow"
PLAIN_SCHEMA = [path for path in shared_migrations() if path.name < "06"]
# The same writer against a plain table: every shared table but the partitioned events.
PLAIN_INGEST = [path for path in shared_migrations() if not path.name.startswith("06")]


def say(text: str) -> None:
    print(text, flush=True)


@contextlib.asynccontextmanager
async def database(admin_url: str, prefix: str) -> AsyncIterator[str]:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    await postgres.admin(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield postgres.with_database(admin_url, name)
    finally:
        await postgres.admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def connect(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await configure_connection(conn)
    return conn
