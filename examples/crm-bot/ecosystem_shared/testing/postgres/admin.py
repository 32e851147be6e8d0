"""Statements a test runs as the server's administrator: databases created, copied, migrated
and dropped, on connections of their own (``CREATE``/``DROP DATABASE`` cannot run in a pool)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import AsyncIterator, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from ecosystem_shared.db import configure_connection
from ecosystem_shared.migrations import apply_migrations, shared_migrations

T = TypeVar("T")


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
