"""How analytics rows reach PostgreSQL: one transaction per batch, events by binary COPY (and
their hourly counts, :mod:`ecosystem_shared.hourly`), the audience's sights and block marks
(:mod:`ecosystem_shared.audience`) in the same transaction."""

from __future__ import annotations

import logging
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from ecosystem_shared.audience import (
    AudienceMark,
    Sight,
    SightKey,
    StoredSight,
    apply_marks,
    due_sights,
    sights_of,
    upsert_sights,
)
from ecosystem_shared.db import CONNECTION_ERRORS
from ecosystem_shared.exceptions import DatabaseUnavailable
from ecosystem_shared.hourly import ADD_COUNTS, hourly_counts
from ecosystem_shared.sanitize import (
    LANGUAGE_CODE_LIMIT,
    NAME_LIMIT,
    clean_id,
    clean_text,
    optional_text,
)

logger = logging.getLogger(__name__)

EVENT_COLUMNS = ("telegram_id", "bot_name", "event_type", "event_data", "created_at")
# Failures after which the rows are kept and retried (the database is away or busy, not the data
# bad): a deadlock or serialization failure rolled the batch back and asks for a retry.
RETRYABLE: tuple[type[BaseException], ...] = (
    DatabaseUnavailable,
    TimeoutError,
    asyncpg.TransactionRollbackError,
    *CONNECTION_ERRORS,
)


# A row buffered during an outage may be older than what another bot wrote since: newer facts
# win, first_seen only moves back, and a placeholder's empty first_name is always replaced.
# One statement for many users (arrays in, one row per user out): a burst of /starts from new
# users costs one round trip, not one each. Ids must be unique within a call.
UPSERT_USERS = """
INSERT INTO shared.users AS u
    (telegram_id, username, first_name, last_name, language_code, first_seen, last_seen)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                     $6::timestamptz[], $6::timestamptz[])
ON CONFLICT (telegram_id) DO UPDATE SET
    username = CASE WHEN EXCLUDED.last_seen >= u.last_seen
                    THEN EXCLUDED.username ELSE u.username END,
    first_name = CASE WHEN EXCLUDED.last_seen >= u.last_seen OR u.first_name = ''
                      THEN EXCLUDED.first_name ELSE u.first_name END,
    last_name = CASE WHEN EXCLUDED.last_seen >= u.last_seen
                     THEN EXCLUDED.last_name ELSE u.last_name END,
    language_code = CASE WHEN EXCLUDED.last_seen >= u.last_seen
                         THEN EXCLUDED.language_code ELSE u.language_code END,
    first_seen = LEAST(u.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(u.last_seen, EXCLUDED.last_seen)
RETURNING telegram_id, (xmax = 0) AS inserted
"""

# Events may name users never seen at /start (the FK needs a row); first_name is NOT NULL.
PLACEHOLDER_USERS = """
INSERT INTO shared.users (telegram_id, first_name)
SELECT id, '' FROM unnest($1::bigint[]) AS t(id) ORDER BY id
ON CONFLICT (telegram_id) DO NOTHING
"""

# The events' foreign key needs a row for each user, and the events add to their hourly counts
# (ecosystem_shared.hourly): one statement, one round trip (a data-modifying WITH always runs).
PLACEHOLDERS_AND_COUNTS = f"""
WITH placeholders AS ({PLACEHOLDER_USERS})
{ADD_COUNTS}
"""

# Each bot's first sight of a user (shared.analytics_bot_users), kept current with every batch so
# that "new to this bot" in any period is a range count; only moves back (rows buffered through
# an outage may be older). Pairs unique and sorted (concurrent writers lock in one order).
UPSERT_FIRST_SIGHTS = """
INSERT INTO shared.analytics_bot_users AS b (telegram_id, bot_name, first_seen)
SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[])
ON CONFLICT (telegram_id, bot_name) DO UPDATE SET first_seen = EXCLUDED.first_seen
    WHERE EXCLUDED.first_seen < b.first_seen
"""

INSERT_EVENT = """
INSERT INTO shared.analytics_events (telegram_id, bot_name, event_type, event_data, created_at)
VALUES ($1, $2, $3, $4, $5)
"""


@dataclass(slots=True)
class UserRow:
    """One user for ``shared.users``, made storable when built (see sanitize.py): over-long
    names are cut, NUL bytes and invalid UTF-8 removed. An id that no BIGINT holds (Telegram's
    have at most 52 bits) raises ValueError."""

    telegram_id: int
    username: str | None
    first_name: str
    last_name: str | None
    language_code: str | None
    seen_at: datetime

    def __post_init__(self) -> None:
        if clean_id(self.telegram_id) is None:
            raise ValueError(f"not a storable Telegram id: {self.telegram_id!r}")
        self.username = optional_text(self.username, NAME_LIMIT)
        self.first_name = clean_text(self.first_name or "", NAME_LIMIT)
        self.last_name = optional_text(self.last_name, NAME_LIMIT)
        self.language_code = optional_text(self.language_code, LANGUAGE_CODE_LIMIT)

    def args(self) -> tuple[Any, ...]:
        return (self.telegram_id, self.username, self.first_name, self.last_name,
                self.language_code, self.seen_at)  # fmt: skip


EventRow = tuple[int | None, str, str, Any, datetime]  # in EVENT_COLUMNS order
Row = UserRow | EventRow | AudienceMark


async def upsert_users(
    conn: asyncpg.Connection, users: Iterable[UserRow], timeout: float
) -> dict[int, bool]:
    """Insert or refresh users (one per id, the last given wins); ``{id: inserted}``. The only
    writer of user data into ``shared.users``: every bot's code that stores users calls it.

    Sorted by id: concurrent bots lock the same rows in the same order (no deadlock)."""
    latest = {user.telegram_id: user for user in users}
    rows = [latest[telegram_id] for telegram_id in sorted(latest)]
    if not rows:
        return {}
    columns = [list(column) for column in zip(*(row.args() for row in rows), strict=True)]
    records = await conn.fetch(UPSERT_USERS, *columns, timeout=timeout)
    return {record["telegram_id"]: bool(record["inserted"]) for record in records}


def first_sights(events: Iterable[EventRow]) -> dict[tuple[int, str], datetime]:
    """(user, bot) -> the earliest time among ``events`` (anonymous events have none)."""
    found: dict[tuple[int, str], datetime] = {}
    for telegram_id, bot_name, _, _, created_at in events:
        if telegram_id is not None:
            key = (telegram_id, bot_name)
            if key not in found or created_at < found[key]:
                found[key] = created_at
    return found


def audience_sights(batch: list[Row], stored: Mapping[SightKey, StoredSight]) -> list[Sight]:
    """The audience sights of ``batch`` to write: see :func:`audience.due_sights`."""
    users = {row.telegram_id: row for row in batch if isinstance(row, UserRow)}
    languages = {user_id: user.language_code for user_id, user in users.items()}
    events = ((row[0], row[1], row[4]) for row in batch if isinstance(row, tuple))
    return due_sights(sights_of(events, languages), stored)


async def write_batch(
    conn: asyncpg.Connection,
    batch: list[Row],
    timeout: float,
    known_pairs: Container[tuple[int, str]] = (),
    stored_sights: Mapping[SightKey, StoredSight] | None = None,
) -> list[int]:
    """Users, placeholder users, events and their hourly counts, first sights of (user, bot)
    pairs not in ``known_pairs``, the audience's sights (those ``stored_sights`` does not make
    redundant), then its block marks, in one transaction (a mark observed after an event of the
    batch is applied after it). Returns the upserted ids."""
    users: dict[int, UserRow] = {}
    events: list[EventRow] = []
    marks: list[AudienceMark] = []
    for row in batch:
        if isinstance(row, UserRow):
            users[row.telegram_id] = row  # later rows carry newer facts
        elif isinstance(row, AudienceMark):
            marks.append(row)
        else:
            events.append(row)
    user_ids = sorted(users)
    missing = sorted({e[0] for e in events if e[0] is not None} - users.keys())
    async with conn.transaction():
        await upsert_users(conn, users.values(), timeout)
        if events:
            await before_events(conn, missing, events, timeout)
            await _insert_events(conn, events, timeout)
            sights = first_sights(events)
            pairs = sorted(pair for pair in sights if pair not in known_pairs)
            if pairs:
                columns = ([p[0] for p in pairs], [p[1] for p in pairs], [sights[p] for p in pairs])
                await conn.execute(UPSERT_FIRST_SIGHTS, *columns, timeout=timeout)
            seen = audience_sights(batch, stored_sights or {})
            await upsert_sights(conn, seen, timeout=timeout)
        if marks:
            await apply_marks(conn, marks, timeout=timeout)
    return user_ids


async def before_events(
    conn: asyncpg.Connection, missing: list[int], events: list[EventRow], timeout: float
) -> None:
    """Placeholder users for the ``missing`` ids, and the hourly counts of ``events``."""
    await conn.execute(PLACEHOLDERS_AND_COUNTS, missing, *hourly_counts(events), timeout=timeout)


async def _insert_events(conn: asyncpg.Connection, events: list[EventRow], timeout: float) -> None:
    try:
        async with conn.transaction():  # a savepoint, so a failed COPY can fall back
            await conn.copy_records_to_table(
                "analytics_events",
                schema_name="shared",
                columns=EVENT_COLUMNS,
                records=events,
                timeout=timeout,
            )
    except RETRYABLE:
        raise
    except Exception as error:  # noqa: BLE001 - logged; the INSERT reports its own errors
        logger.warning("Analytics: COPY failed (%s), using INSERT", error)
        await conn.executemany(INSERT_EVENT, events, timeout=timeout)
