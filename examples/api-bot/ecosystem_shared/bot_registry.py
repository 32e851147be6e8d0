"""The ecosystem's bots by slug: ``shared.bots`` (``sql/09-bots.sql``).

Other shared tables are keyed by ``BOT_NAME``; a person names a bot by its slug (the
``bot_slug`` answer, ``BOT_SLUG``). Each bot upserts ``slug -> BOT_NAME`` once per start, when
the database is first reachable (:class:`BotRegistration`), so a database down at start delays
the row and fails nothing, and a renamed ``BOT_NAME`` updates its slug's row.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import asyncpg

from ecosystem_shared.db import CONNECTION_ERRORS, Database
from ecosystem_shared.exceptions import DatabaseUnavailable

__all__ = ["BotRegistration", "KnownBots", "find_bot_name", "known_bots", "register_bot"]

logger = logging.getLogger(__name__)

# The CTE reads the row as it was before the upsert: the name it replaces, if any.
_UPSERT = """
WITH before AS (SELECT bot_name FROM shared.bots WHERE slug = $1)
INSERT INTO shared.bots (slug, bot_name) VALUES ($1, $2)
ON CONFLICT (slug) DO UPDATE SET bot_name = EXCLUDED.bot_name, last_started_at = now()
RETURNING (SELECT bot_name FROM before)
"""


async def register_bot(conn: Any, slug: str, bot_name: str) -> str | None:
    """Record this bot's slug and name; the name the slug had before (None: a new slug)."""
    previous = await conn.fetchval(_UPSERT, slug, bot_name)
    return None if previous is None else str(previous)


class BotRegistration:
    """Registers the bot after the first successful connection of this process."""

    def __init__(self, db: Database, slug: str, bot_name: str) -> None:
        self.db = db
        self.slug = slug
        self.bot_name = bot_name
        self.registered = False

    def start(self) -> None:
        """Call before ``db.start()``: the registration follows the first connection."""
        if self.db.enabled and self.slug:
            self.db.on_connected.append(self.register)

    def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.db.on_connected.remove(self.register)

    async def register(self) -> None:
        """One attempt; a failure is logged and retried after the next reconnection."""
        if self.registered:
            return
        try:
            async with self.db.acquire() as conn:
                previous = await register_bot(conn, self.slug, self.bot_name)
        except (DatabaseUnavailable, asyncpg.PostgresError, *CONNECTION_ERRORS) as error:
            logger.warning(
                "Could not record bot %s in shared.bots (%s); retrying after the next reconnection",
                self.slug,
                error,
            )
            return
        self.registered = True
        self.close()
        if previous is not None and previous != self.bot_name:
            logger.info("Bot %s renamed: %r -> %r", self.slug, previous, self.bot_name)


@dataclass(frozen=True, slots=True)
class KnownBots:
    """What another bot can be named by: registered slugs, and the names with an audience or a
    registration (bots not started since shared.bots exists are known by name only)."""

    slugs: tuple[str, ...]
    names: tuple[str, ...]


async def known_bots(conn: Any) -> KnownBots:
    slugs = await conn.fetch("SELECT slug FROM shared.bots ORDER BY slug")
    # The audience's names from its per-bot count deltas (a few rows a bot), not a DISTINCT
    # over every member: a fleet's audience runs to millions of rows.
    names = await conn.fetch(
        "SELECT bot_name FROM shared.bots UNION SELECT bot_name FROM shared.bot_audience_counts"
    )
    return KnownBots(
        tuple(row["slug"] for row in slugs), tuple(sorted(row["bot_name"] for row in names))
    )


async def find_bot_name(conn: Any, bot: str) -> str | None:
    """The ``BOT_NAME`` of the bot named ``bot``: a registered slug first, else a ``BOT_NAME``
    (both case-insensitive); None when neither matches."""
    wanted = bot.strip().lower()
    name = await conn.fetchval("SELECT bot_name FROM shared.bots WHERE lower(slug) = $1", wanted)
    if name is not None:
        return str(name)
    known = await known_bots(conn)
    return next((name for name in known.names if name.lower() == wanted), None)
