"""Each bot's audience in ``shared.bot_audience`` (see ``sql/04-audience.sql``).

One row per (bot, user): first and last sight, language, and ``blocked_at`` (NULL while the
user can be messaged). The analytics writer keeps sights and languages current with each batch
and applies the block marks buffered on the handler path (:class:`AudienceMark`); the functions
here are the same statements for callers that write directly (a broadcast sender inside its own
transaction, a script), and the counts the digest and ``/stats`` show.

Marks carry the time they were observed, so that marks applied late (buffered through an
outage, or by another process) do not undo newer ones: "reachable" clears only a block observed
before it, and a block already recorded keeps its time (a repeated 403 is not a new block).
Sights (events) never change ``blocked_at``: a reply that failed because the user blocked the
bot is followed by an error event of that user. Known limit: a block observed by one process
and applied after another process applied the user's later unblock stands until the user's
next unblock (Telegram sends ``my_chat_member`` each time); that takes an unblock within about
one flush interval of the block.

Every function takes an ``asyncpg.Pool`` or ``asyncpg.Connection`` (one statement each).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from ecosystem_shared.local_days import local_day_bounds, yesterday
from ecosystem_shared.sanitize import LANGUAGE_CODE_LIMIT, NAME_LIMIT, clean_text, optional_text

__all__ = [
    "AudienceCounts",
    "AudienceMark",
    "Sight",
    "apply_marks",
    "audience_counts",
    "audience_counts_between",
    "compact_counts",
    "due_sights",
    "mark_blocked",
    "mark_reachable",
    "sights_of",
    "upsert_sights",
]


@dataclass(frozen=True, slots=True)
class AudienceMark:
    """``blocked=True``: the user blocked the bot (or the account is gone) at ``at``;
    ``blocked=False``: the user can be messaged again (unblocked, restarted the bot)."""

    bot_name: str
    telegram_id: int
    blocked: bool
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    language_code: str | None = None


# Arrays in, one row per mark. A mark inserts the row of a user the bot never tracked (a
# notification to an admin who never wrote to it, say) with first/last seen at the mark.
# Sorted by key by the caller: concurrent writers lock rows in one order (no deadlock).
_APPLY_MARKS = """
INSERT INTO shared.bot_audience AS a
    (bot_name, telegram_id, first_seen, last_seen, language_code, blocked_at)
SELECT m.bot_name, m.telegram_id, m.at, m.at, m.language_code,
       CASE WHEN m.blocked THEN m.at END
FROM unnest($1::text[], $2::bigint[], $3::bool[], $4::timestamptz[], $5::text[])
    AS m(bot_name, telegram_id, blocked, at, language_code)
ON CONFLICT (bot_name, telegram_id) DO UPDATE SET
    blocked_at = CASE
        -- a block already recorded keeps its time
        WHEN EXCLUDED.blocked_at IS NOT NULL THEN coalesce(a.blocked_at, EXCLUDED.blocked_at)
        -- reachable again: clears a block observed before it
        WHEN a.blocked_at <= EXCLUDED.last_seen THEN NULL
        ELSE a.blocked_at END,
    -- the user acted when unblocking (a block is Telegram's answer, not a sight)
    last_seen = CASE WHEN EXCLUDED.blocked_at IS NULL
                     THEN greatest(a.last_seen, EXCLUDED.last_seen) ELSE a.last_seen END,
    language_code = coalesce(EXCLUDED.language_code, a.language_code)
RETURNING bot_name, telegram_id, blocked_at IS NOT NULL AS blocked
"""


@dataclass(frozen=True, slots=True)
class Sight:
    """A user seen by a bot between ``first`` and ``last`` (analytics events of one batch)."""

    bot_name: str
    telegram_id: int
    first: datetime
    last: datetime
    language_code: str | None = None


def sights_of(
    events: Iterable[tuple[int | None, str, datetime]], languages: dict[int, str | None]
) -> list[Sight]:
    """(user, bot, time) triples -> one :class:`Sight` per (bot, user), sorted by key, with
    the language ``languages`` knows for the user (anonymous events have no user)."""
    spans: dict[tuple[str, int], tuple[datetime, datetime]] = {}
    for telegram_id, bot_name, at in events:
        if telegram_id is None:
            continue
        key = (bot_name, telegram_id)
        first, last = spans.get(key, (at, at))
        spans[key] = (min(first, at), max(last, at))
    return [
        Sight(bot, user, first, last, languages.get(user))
        for (bot, user), (first, last) in sorted(spans.items())
    ]


# A pair stored with a last sight at most this much older (and the same language, or none new)
# is not written again: an active user costs the writer one upsert per this period, not one per
# batch. last_seen is exact to this much.
LAST_SEEN_RESOLUTION = timedelta(minutes=5)

SightKey = tuple[str, int]  # (bot_name, telegram_id)
StoredSight = tuple[datetime, str | None]  # last_seen and language written by this process


def due_sights(sights: list[Sight], stored: Mapping[SightKey, StoredSight]) -> list[Sight]:
    """The sights worth writing, given what this process stored last (``stored``)."""
    due = []
    for sight in sights:
        known = stored.get((sight.bot_name, sight.telegram_id))
        if (
            known is None
            or sight.last - known[0] >= LAST_SEEN_RESOLUTION
            or (sight.language_code is not None and sight.language_code != known[1])
        ):
            due.append(sight)
    return due


# first_seen only moves back and last_seen forward (rows buffered through an outage may be
# older than what another bot wrote since); the language of the newest sight wins, taken from
# shared.users when the batch did not carry the user's row (a new user's is stored at /start).
_UPSERT_SIGHTS = """
INSERT INTO shared.bot_audience AS a (bot_name, telegram_id, first_seen, last_seen, language_code)
SELECT s.bot_name, s.telegram_id, s.first_seen, s.last_seen,
       coalesce(s.language_code, u.language_code)
FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::timestamptz[], $5::text[])
    AS s(bot_name, telegram_id, first_seen, last_seen, language_code)
LEFT JOIN shared.users u ON u.telegram_id = s.telegram_id
ORDER BY s.bot_name, s.telegram_id
ON CONFLICT (bot_name, telegram_id) DO UPDATE SET
    first_seen = least(a.first_seen, EXCLUDED.first_seen),
    last_seen = greatest(a.last_seen, EXCLUDED.last_seen),
    language_code = CASE WHEN EXCLUDED.language_code IS NOT NULL
                              AND EXCLUDED.last_seen >= a.last_seen
                         THEN EXCLUDED.language_code ELSE a.language_code END
"""


async def upsert_sights(
    executor: Any, sights: list[Sight], *, timeout: float | None = None
) -> None:
    """Store sights (sorted by key, one per key: see :func:`sights_of`) in one statement."""
    if not sights:
        return
    await executor.execute(
        _UPSERT_SIGHTS,
        [s.bot_name for s in sights],
        [s.telegram_id for s in sights],
        [s.first for s in sights],
        [s.last for s in sights],
        [s.language_code for s in sights],
        timeout=timeout,
    )


def _latest_per_user(marks: Iterable[AudienceMark]) -> list[AudienceMark]:
    """One mark per (bot, user), the latest observed (ties: the later given), sorted by key."""
    latest: dict[tuple[str, int], AudienceMark] = {}
    for mark in marks:
        bot = clean_text(mark.bot_name, NAME_LIMIT) or "bot"
        key = (bot, mark.telegram_id)
        if key not in latest or mark.at >= latest[key].at:
            language = optional_text(mark.language_code, LANGUAGE_CODE_LIMIT)
            latest[key] = AudienceMark(bot, mark.telegram_id, mark.blocked, mark.at, language)
    return [latest[key] for key in sorted(latest)]


async def apply_marks(
    executor: Any, marks: Iterable[AudienceMark], *, timeout: float | None = None
) -> dict[tuple[str, int], bool]:
    """Apply block/reachable marks in one statement; ``{(bot, user): blocked now}``."""
    rows = _latest_per_user(marks)
    if not rows:
        return {}
    records = await executor.fetch(
        _APPLY_MARKS,
        [m.bot_name for m in rows],
        [m.telegram_id for m in rows],
        [m.blocked for m in rows],
        [m.at for m in rows],
        [m.language_code for m in rows],
        timeout=timeout,
    )
    return {(r["bot_name"], r["telegram_id"]): bool(r["blocked"]) for r in records}


async def mark_blocked(
    executor: Any,
    bot_name: str,
    telegram_id: int,
    *,
    at: datetime | None = None,
    timeout: float | None = None,
) -> bool:
    """The user blocked ``bot_name`` (or deleted the account); True (the row is blocked)."""
    mark = AudienceMark(bot_name, telegram_id, True, at or datetime.now(UTC))
    result = await apply_marks(executor, [mark], timeout=timeout)
    return next(iter(result.values()))


async def mark_reachable(
    executor: Any,
    bot_name: str,
    telegram_id: int,
    *,
    at: datetime | None = None,
    language_code: str | None = None,
    timeout: float | None = None,
) -> bool:
    """The user can be messaged by ``bot_name`` again; True when the row is reachable after
    it (False: a block observed after ``at`` stands)."""
    mark = AudienceMark(bot_name, telegram_id, False, at or datetime.now(UTC), language_code)
    result = await apply_marks(executor, [mark], timeout=timeout)
    return not next(iter(result.values()))


@dataclass(frozen=True, slots=True)
class AudienceCounts:
    reachable: int = 0  # users the bot may message now (blocked_at IS NULL)
    blocked_in_period: int = 0  # users whose block was observed in the period asked for
    blocked: int = 0  # every user who has the bot blocked now


# Members and blocked users now: the sums of the deltas the triggers of 04-audience.sql keep
# (a few rows a bot); blocks in the period: a range of the partial index of blocked rows. No
# event is read, so the figures cost the same with partitioned events, rollups and retention.
_COUNTS = """
SELECT c.bot_name, sum(c.members) - sum(c.blocked) AS reachable, sum(c.blocked) AS blocked,
       (SELECT count(*) FROM shared.bot_audience a
        WHERE a.bot_name = c.bot_name AND a.blocked_at >= $1 AND a.blocked_at < $2)
           AS blocked_in_period
FROM shared.bot_audience_counts c
WHERE ($3::text IS NULL OR c.bot_name = $3)
GROUP BY c.bot_name
HAVING sum(c.members) > 0
"""


async def audience_counts(
    executor: Any,
    timezone: str,
    *,
    day: date | None = None,
    bot_name: str | None = None,
    timeout: float | None = None,
) -> dict[str, AudienceCounts]:
    """Per bot (one bot with ``bot_name``): reachable users now, users who blocked it during
    the local ``day`` of ``timezone`` (default: yesterday there), and all blocked now."""
    start, end = local_day_bounds(day or yesterday(timezone), timezone)
    return await audience_counts_between(executor, start, end, bot_name=bot_name, timeout=timeout)


async def audience_counts_between(
    executor: Any,
    start: datetime,
    end: datetime,
    *,
    bot_name: str | None = None,
    timeout: float | None = None,
) -> dict[str, AudienceCounts]:
    """As :func:`audience_counts`, blocks counted in ``[start, end)``."""
    rows = await executor.fetch(_COUNTS, start, end, bot_name, timeout=timeout)
    return {
        row["bot_name"]: AudienceCounts(
            int(row["reachable"]), int(row["blocked_in_period"]), int(row["blocked"])
        )
        for row in rows
    }


async def compact_counts(executor: Any, *, timeout: float | None = None) -> int:
    """Sum each bot's count deltas into one row (the bots' daily maintenance); rows left."""
    return int(
        await executor.fetchval("SELECT shared.bot_audience_compact_counts()", timeout=timeout)
    )
