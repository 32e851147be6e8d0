"""Retention of raw analytics events: ``ANALYTICS_RETENTION_MONTHS`` (unset: keep everything).

The monthly partitions of ``shared.analytics_events`` that ended more than that many whole months
before the current UTC month are detached and dropped, oldest first, each only once a backup
recorded in ``shared.backups`` (``scripts/backup.sh`` writes it) started after the partition's
last event time. Daily rollups and each bot's first sight of a user stay: the digest's history
does not change. One process a day does it (the same claim in ``shared.digest_runs`` that elects
the digest's sender); every drop is logged and recorded in ``shared.analytics_retention_log``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime

import asyncpg

logger = logging.getLogger(__name__)

RETENTION_JOB = "analytics_retention"
DETACH_LOCK_TIMEOUT = "5s"  # writers wait at most this for one partition's detach

# Monthly partitions (not the default one) whose range ended by $1, oldest first.
_EXPIRED = """
SELECT c.relname AS name, lo, lo + interval '1 month' AS hi
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
CROSS JOIN LATERAL (
    SELECT to_date(substr(c.relname, 18), 'YYYY_MM')::timestamp AT TIME ZONE 'UTC' AS lo
) bounds
WHERE i.inhparent = 'shared.analytics_events'::regclass
  AND c.relname ~ '^analytics_events_[0-9]{4}_[0-9]{2}$'
  AND lo + interval '1 month' <= $1
ORDER BY lo
"""
_BACKUP_AFTER = """
SELECT id FROM shared.backups WHERE started_at >= $1 ORDER BY started_at LIMIT 1
"""
_DROP = "SELECT shared.analytics_drop_partition($1, $2, $3, $4, $5)"


@dataclass(frozen=True, slots=True)
class Dropped:
    partition: str
    start: datetime
    end: datetime
    events: int
    backup_id: int


def retention_cutoff(months: int, now: datetime | None = None) -> datetime:
    """Partitions ending at or before this moment are expired: the start of the UTC month
    ``months`` months before the current one."""
    today = (now or datetime.now(UTC)).astimezone(UTC).date()
    index = today.year * 12 + today.month - 1 - months
    return datetime.combine(date(index // 12, index % 12 + 1, 1), datetime.min.time(), UTC)


async def drop_expired_partitions(
    conn: asyncpg.Connection, months: int, *, bot_name: str | None, now: datetime | None = None
) -> list[Dropped]:
    """Drop what retention allows now; the partitions dropped. Stops at the first partition no
    backup covers yet (the later ones need a later backup still)."""
    if await conn.fetchval("SELECT to_regclass('shared.backups')") is None:
        return []
    if (
        await conn.fetchval("SELECT shared.analytics_events_parent()::text")
        != "shared.analytics_events"
    ):
        return []  # not switched to the partitioned table yet
    dropped: list[Dropped] = []
    for row in await conn.fetch(_EXPIRED, retention_cutoff(months, now)):
        name, start, end = str(row["name"]), row["lo"], row["hi"]
        backup_id = await conn.fetchval(_BACKUP_AFTER, end)
        if backup_id is None:
            logger.warning(
                "Analytics retention: %s kept, no backup started after %s is recorded"
                " (scripts/backup.sh records them in shared.backups)",
                name,
                end.isoformat(),
            )
            break
        async with conn.transaction():
            await conn.execute(f"SET LOCAL lock_timeout = '{DETACH_LOCK_TIMEOUT}'")
            events = await conn.fetchval(_DROP, name, start, end, backup_id, bot_name)
        if events is None:
            continue  # gone meanwhile
        dropped.append(Dropped(name, start, end, int(events), int(backup_id)))
        logger.warning(
            "Analytics retention: dropped %s (%d events from %s to %s; backup #%d exists)",
            name, events, start.date(), end.date(), backup_id,
        )  # fmt: skip
    return dropped
