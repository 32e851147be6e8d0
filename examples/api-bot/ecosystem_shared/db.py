"""PostgreSQL access shared by a bot's handlers, analytics and the digest.

The bot must keep answering users when the database is missing or down, so :class:`Database`
never raises from :meth:`Database.start`: without a DSN it stays disabled, and an unreachable
server is retried in the background until it appears (no restart needed). While the database
is unavailable :meth:`Database.acquire` fails fast with :class:`DatabaseUnavailable`.

Every pooled connection encodes ``json``/``jsonb`` from Python objects and decodes them back
(binary ``jsonb``, which ``copy_records_to_table`` needs).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from ecosystem_shared.exceptions import DatabaseUnavailable
from ecosystem_shared.migrations import apply_migrations

logger = logging.getLogger(__name__)

# Errors that mean "the server or the connection is gone", as opposed to a bad query.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # includes ConnectionDoesNotExistError
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
    OSError,
)

CLOSE_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *CONNECTION_ERRORS)

CONNECT_TIMEOUT = 5.0
CLOSE_TIMEOUT = 5.0

OnConnected = Callable[[], Awaitable[None]]


def describe_dsn(dsn: str) -> str:
    """``host:port/database`` for logs: never the user's password."""
    try:
        parts = urlsplit(dsn)
        if parts.scheme not in ("postgres", "postgresql"):
            return "database"
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
        return f"{host}{port}{parts.path or '/'}"
    except ValueError:
        return "database"


def _jsonb_encode(value: Any) -> bytes:
    # Binary jsonb format: a version byte, then the JSON text.
    return b"\x01" + json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def _jsonb_decode(data: bytes) -> Any:
    return json.loads(data[1:])


async def configure_connection(conn: asyncpg.Connection) -> None:
    """Type codecs every connection of the ecosystem uses (pool ``init``)."""
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=_jsonb_encode,
        decoder=_jsonb_decode,
        format="binary",
    )
    await conn.set_type_codec(
        "json",
        schema="pg_catalog",
        encoder=lambda value: json.dumps(value, ensure_ascii=False),
        decoder=json.loads,
        format="text",
    )


class Database:
    """An asyncpg pool that degrades gracefully and reconnects by itself."""

    def __init__(
        self,
        dsn: str | None,
        *,
        min_size: int = 1,
        max_size: int = 5,
        reconnect_seconds: float = 5.0,
        migrations: Sequence[Path] = (),
    ) -> None:
        self._dsn = dsn or None
        self._min_size = min_size
        self._max_size = max(max_size, min_size, 1)
        self._reconnect_seconds = reconnect_seconds
        self._migrations = list(migrations)
        self._pool: asyncpg.Pool | None = None
        self._healthy = False
        self._closed = False
        self._reconnect_task: asyncio.Task[None] | None = None
        self._last_problem: str | None = None
        self.connections_lost = 0  # times a connected database was found lost (an outage each)
        # Called (awaited, errors logged) after every successful (re)connection.
        self.on_connected: list[OnConnected] = []

    @property
    def enabled(self) -> bool:
        return self._dsn is not None

    @property
    def available(self) -> bool:
        return self._pool is not None and self._healthy and not self._closed

    def pool_usage(self) -> tuple[int, int]:
        """Connections open in the pool and those taken by a query (0, 0 without a pool)."""
        pool = self._pool
        if pool is None:
            return 0, 0
        size = pool.get_size()
        return size, size - pool.get_idle_size()

    @property
    def target(self) -> str:
        return describe_dsn(self._dsn) if self._dsn else "no database"

    async def start(self) -> None:
        """Connect and migrate; never raises. Safe to call once per instance."""
        if self._dsn is None:
            logger.warning("DATABASE_URL is not set: running without a database (no analytics)")
            return
        if self._pool is not None or self._reconnect_task is not None:
            return
        if await self._try_connect():
            return
        logger.warning(
            "Database %s is unavailable (%s); retrying every %g s in the background",
            self.target,
            self._last_problem,
            self._reconnect_seconds,
        )
        self._start_reconnect(immediately=False)

    @contextlib.asynccontextmanager
    async def acquire(self, *, timeout: float | None = None) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; :class:`DatabaseUnavailable` when there is none to be had.

        Connection errors raised inside the block are turned into ``DatabaseUnavailable`` too,
        and start the background reconnect; other errors (bad SQL, constraints) pass through.
        """
        pool = self._pool
        if pool is None or not self.available:
            raise DatabaseUnavailable(f"database unavailable ({self.target})")
        broken = False
        try:
            async with pool.acquire(timeout=timeout) as conn:
                try:
                    yield conn
                except asyncpg.InternalClientError:
                    # A client-side problem (a codec, say) unless it left the connection
                    # closed, as after pg_terminate_backend.
                    broken = conn.is_closed()
                    raise
        except (*CONNECTION_ERRORS, asyncpg.InternalClientError) as error:
            if isinstance(error, asyncpg.InternalClientError) and not broken:
                raise
            if isinstance(error, TimeoutError):
                # An OSError too, but a busy pool or a slow statement, not a lost server:
                # marking the database lost would reconnect and drop every pooled connection.
                raise
            self.connection_lost(error)
            raise DatabaseUnavailable(f"database connection lost ({self.target})") from error

    def connection_lost(self, error: BaseException) -> None:
        """Mark the database unavailable and start reconnecting (idempotent)."""
        if self._closed or self._pool is None:
            return
        if self._healthy:
            self.connections_lost += 1
            logger.warning(
                "Lost the database %s (%s: %s); reconnecting in the background",
                self.target,
                type(error).__name__,
                error,
            )
        self._healthy = False
        self._start_reconnect(immediately=True)

    async def close(self) -> None:
        self._closed = True
        task, self._reconnect_task = self._reconnect_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pool, self._pool = self._pool, None
        self._healthy = False
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT)
            except CLOSE_ERRORS:
                pool.terminate()

    # -- internals ---------------------------------------------------------------------------

    def _start_reconnect(self, *, immediately: bool) -> None:
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.create_task(
                self._reconnect_loop(immediately), name="database-reconnect"
            )

    async def _reconnect_loop(self, immediately: bool) -> None:
        if self._pool is not None:
            # Stale connections would each fail once more after a restart: replace them all.
            await self._pool.expire_connections()
        if immediately and await self._try_connect():
            return
        while not self._closed:
            await asyncio.sleep(self._reconnect_seconds)
            if await self._try_connect():
                return

    async def _try_connect(self) -> bool:
        """One attempt: open the pool if needed, check it, migrate, notify. True on success."""
        assert self._dsn is not None
        try:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self._dsn,
                    min_size=self._min_size,
                    max_size=self._max_size,
                    timeout=CONNECT_TIMEOUT,
                    init=configure_connection,
                )
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT) as conn:
                await apply_migrations(conn, self._migrations)
        except Exception as error:  # noqa: BLE001 - any failure means "try again later"
            problem = f"{type(error).__name__}: {error}"
            if self._last_problem is not None and problem != self._last_problem:
                logger.warning("Database %s still unavailable: %s", self.target, problem)
            else:
                logger.debug("Database %s unavailable: %s", self.target, problem)
            self._last_problem = problem
            return False
        if self._closed:
            return False
        self._healthy = True
        self._last_problem = None
        logger.info("Connected to the database %s", self.target)
        for callback in list(self.on_connected):
            try:
                await callback()
            except Exception:
                logger.exception("on_connected callback failed")
        return True
