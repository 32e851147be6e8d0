"""The rendered bot and its own test kit: rendering, importing its modules, PostgreSQL."""

from __future__ import annotations

import contextlib
import importlib
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg

from benchmarks.config import ANSWERS, PACKAGE
from benchmarks.refs import render_ref
from benchmarks.results import Results, progress
from devkit.render import copy_template


def render(dst: Path, ref: str | None = None) -> float:
    """``copier copy`` of this repository into ``dst`` (``ref``: of that git ref, into
    ``refs.ref_dir(dst, ref)``); returns the seconds it took."""
    started = time.perf_counter()
    if ref is None:
        copy_template(dst, ANSWERS)
    else:
        render_ref(dst, ref, ANSWERS)
    return time.perf_counter() - started


@dataclass(frozen=True)
class RenderedBot:
    """The rendered bot's own modules, imported from its directory."""

    bot_dir: Path
    fake_bot_api: ModuleType
    bot_process: ModuleType
    postgres: ModuleType
    db: ModuleType
    analytics: ModuleType
    migrations: ModuleType
    texts: ModuleType
    settings: ModuleType
    waiting: ModuleType


def load_rendered_bot(bot_dir: Path) -> RenderedBot:
    sys.path.insert(0, str(bot_dir))
    load = importlib.import_module
    return RenderedBot(
        bot_dir=bot_dir,
        fake_bot_api=load("ecosystem_shared.testing.fake_bot_api"),
        bot_process=load("ecosystem_shared.testing.bot_process"),
        postgres=load("ecosystem_shared.testing.postgres"),
        db=load("ecosystem_shared.db"),
        analytics=load("ecosystem_shared.analytics"),
        migrations=load("ecosystem_shared.migrations"),
        texts=load("ecosystem_shared.texts"),
        settings=load(f"{PACKAGE}.settings"),
        waiting=load("ecosystem_shared.testing.waiting"),
    )


@contextlib.asynccontextmanager
async def postgres_server(
    postgres: ModuleType, db: ModuleType, results: Results
) -> AsyncIterator[str]:
    """An admin URL: TEST_DATABASE_URL, or a throwaway cluster removed afterwards.

    ``postgres`` and ``db`` are a rendered bot's ``ecosystem_shared.testing.postgres`` and
    ``ecosystem_shared.db``.
    """
    url = postgres.server_url()  # TEST_DATABASE_URL or DATABASE_URL
    if url:
        results.machine["postgres_source"] = (
            f"TEST_DATABASE_URL ({db.describe_dsn(url)}), fresh databases"
        )
        yield url
        return
    server = postgres.PostgresServer()
    try:
        # Blocking on purpose: a SIGTERM/Ctrl-C must not interrupt initdb/pg_ctl half-way
        # (a cancelled thread would go on starting a server that nothing stops).
        server.start()
        results.machine["postgres_source"] = (
            f"throwaway cluster from {server.bin_dir} (fsync=off, synchronous_commit=off)"
        )
        yield str(server.url)
    finally:
        progress("stopping the throwaway PostgreSQL")
        server.cleanup()


async def fetchval(url: str, query: str, *args: Any) -> Any:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()
