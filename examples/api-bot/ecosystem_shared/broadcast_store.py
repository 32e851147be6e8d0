"""Broadcast jobs: ``shared.broadcasts`` and ``shared.broadcast_recipients`` (05-broadcasts.sql).

Used by the sender (ecosystem_shared/broadcast_sender.py), the command line
(``python -m ecosystem_shared.broadcast``) and the admin commands. Every function takes an
``asyncpg.Connection`` (or pool) and runs one statement or one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg

from ecosystem_shared.audience import AudienceMark, apply_marks
from ecosystem_shared.bot_registry import find_bot_name, known_bots
from ecosystem_shared.broadcast_message import BroadcastInputError, BroadcastMessage

__all__ = [
    "AudienceFilter",
    "JobSummary",
    "Outcome",
    "change_state",
    "count_audience",
    "create_job",
    "get_job",
    "get_message",
    "list_jobs",
    "start_job",
]

STATES = ("draft", "running", "paused", "cancelled", "done")
RECIPIENT_STATES = ("pending", "in_flight", "sent", "blocked", "failed", "unknown")


@dataclass(frozen=True, slots=True)
class AudienceFilter:
    """Reachable users of the bot, narrowed by language, recent sight, another bot's audience."""

    language: str | None = None
    seen_days: int | None = None
    also_uses: str | None = None  # another bot's slug or BOT_NAME (stored: its BOT_NAME)

    def as_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


_AUDIENCE = """
FROM shared.bot_audience a
WHERE a.bot_name = $1 AND a.blocked_at IS NULL
  AND ($2::text IS NULL OR a.language_code = $2)
  AND ($3::int IS NULL OR a.last_seen >= now() - make_interval(days => $3))
  AND ($4::text IS NULL OR EXISTS (
      SELECT 1 FROM shared.bot_audience o
      WHERE lower(o.bot_name) = lower($4) AND o.telegram_id = a.telegram_id
        AND o.blocked_at IS NULL))
"""


_INSERT_RECIPIENTS = (  # nosec B608: constant SQL, values are parameters
    "INSERT INTO shared.broadcast_recipients (broadcast_id, telegram_id)"
    f" SELECT $5, a.telegram_id {_AUDIENCE} ORDER BY a.telegram_id"
)


async def _resolve_other_bot(conn: Any, audience: AudienceFilter) -> AudienceFilter:
    """``also_uses`` as the other bot's ``BOT_NAME`` (the audience is keyed by it), from its
    slug or its name; :class:`BroadcastInputError` naming the known bots when neither matches."""
    if audience.also_uses is None:
        return audience
    name = await find_bot_name(conn, audience.also_uses)
    if name is not None:
        return replace(audience, also_uses=name)
    known = await known_bots(conn)
    raise BroadcastInputError(
        f"--also-uses: no bot with the slug or BOT_NAME {audience.also_uses!r}."
        f" Known slugs: {', '.join(known.slugs) or 'none yet'}."
        " A bot not started since the upgrade that added shared.bots has no slug on record"
        f" and is matched by its BOT_NAME: {', '.join(known.names) or 'none has an audience yet'}"
    )


async def count_audience(conn: Any, bot_name: str, audience: AudienceFilter) -> int:
    audience = await _resolve_other_bot(conn, audience)
    args = (bot_name, audience.language, audience.seen_days, audience.also_uses)
    query = f"SELECT count(*) {_AUDIENCE}"  # nosec B608: constant SQL, values are parameters
    return int(await conn.fetchval(query, *args))


async def create_job(
    conn: asyncpg.Connection,
    bot_name: str,
    message: BroadcastMessage,
    audience: AudienceFilter,
    *,
    created_by: int | None = None,
    admin_chat_id: int | None = None,
) -> tuple[int, int]:
    """A draft job with its recipients (the audience now); ``(id, recipients)``.
    :class:`BroadcastInputError` for a bad message or an empty audience (nothing written)."""
    message.check()
    audience = await _resolve_other_bot(conn, audience)
    async with conn.transaction():
        job_id = await conn.fetchval(
            """INSERT INTO shared.broadcasts (bot_name, text, photo, photo_file_id, button_text,
                   button_url, audience, created_by, admin_chat_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id""",
            bot_name,
            message.text,
            message.photo,
            message.photo_file_id,
            message.button_text,
            message.button_url,
            audience.as_json(),
            created_by,
            admin_chat_id,
        )
        args = (bot_name, audience.language, audience.seen_days, audience.also_uses)
        status = await conn.execute(
            _INSERT_RECIPIENTS,
            *args,
            job_id,
        )
        total = int(status.split()[-1])
        if total == 0:
            raise BroadcastInputError("The audience is empty: nobody matches, nothing created")
    return int(job_id), total


async def start_job(conn: Any, job_id: int) -> bool:
    """draft -> running; False when the job was not a draft (a second Confirm starts nothing)."""
    status = await conn.execute(
        "UPDATE shared.broadcasts SET state = 'running', started_at = now()"
        " WHERE id = $1 AND state = 'draft'",
        job_id,
    )
    return bool(status == "UPDATE 1")


# action -> (states it applies to, new state)
_ACTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "pause": (("running",), "paused"),
    "resume": (("paused",), "running"),
    "cancel": (("draft", "running", "paused"), "cancelled"),
}


async def change_state(conn: Any, job_id: int, action: str, *, reason: str | None = None) -> str:
    """Pause, resume or cancel; the new state, or :class:`BroadcastInputError` saying why not."""
    allowed, new = _ACTIONS[action]
    row = await conn.fetchrow(
        """UPDATE shared.broadcasts SET state = $2,
               pause_reason = CASE WHEN $2 = 'paused' THEN $3 END,
               not_before = CASE WHEN $2 = 'running' THEN NULL ELSE not_before END,
               started_at = coalesce(started_at, CASE WHEN $2 = 'running' THEN now() END),
               finished_at = CASE WHEN $2 = 'cancelled' THEN now() END
           WHERE id = $1 AND state = ANY($4::text[]) RETURNING state""",
        job_id,
        new,
        reason,
        list(allowed),
    )
    if row is not None:
        return str(row["state"])
    current = await conn.fetchval("SELECT state FROM shared.broadcasts WHERE id = $1", job_id)
    if current is None:
        raise BroadcastInputError(f"No broadcast with id {job_id}")
    raise BroadcastInputError(f"Cannot {action} broadcast {job_id}: it is {current}")


@dataclass(frozen=True, slots=True)
class JobSummary:
    id: int
    bot_name: str
    state: str
    pause_reason: str | None
    text: str
    has_photo: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    total: int
    pending: int
    in_flight: int
    sent: int
    blocked: int
    failed: int
    unknown: int

    @property
    def left(self) -> int:
        return self.pending + self.in_flight

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("created_at", "started_at", "finished_at"):
            data[key] = data[key].isoformat() if data[key] is not None else None
        return data


_SUMMARY = """
SELECT b.id, b.bot_name, b.state, b.pause_reason, b.text,
       (b.photo IS NOT NULL OR b.photo_file_id IS NOT NULL) AS has_photo,
       b.created_at, b.started_at, b.finished_at,
       count(r.telegram_id) AS total,
       count(*) FILTER (WHERE r.state = 'pending') AS pending,
       count(*) FILTER (WHERE r.state = 'in_flight') AS in_flight,
       count(*) FILTER (WHERE r.state = 'sent') AS sent,
       count(*) FILTER (WHERE r.state = 'blocked') AS blocked,
       count(*) FILTER (WHERE r.state = 'failed') AS failed,
       count(*) FILTER (WHERE r.state = 'unknown') AS unknown
FROM shared.broadcasts b
LEFT JOIN shared.broadcast_recipients r ON r.broadcast_id = b.id
"""


_LIST = (
    f"{_SUMMARY} WHERE b.id IN"  # nosec B608: constant SQL, values are parameters
    " (SELECT id FROM shared.broadcasts"
    " WHERE $1::text IS NULL OR bot_name = $1 ORDER BY id DESC LIMIT $2)"
    " GROUP BY b.id ORDER BY b.id DESC"
)


async def get_job(conn: Any, job_id: int) -> JobSummary:
    query = f"{_SUMMARY} WHERE b.id = $1 GROUP BY b.id"  # nosec B608: constant SQL
    row = await conn.fetchrow(query, job_id)
    if row is None:
        raise BroadcastInputError(f"No broadcast with id {job_id}")
    return JobSummary(**dict(row))


async def list_jobs(conn: Any, bot_name: str | None = None, limit: int = 20) -> list[JobSummary]:
    rows = await conn.fetch(
        _LIST,
        bot_name,
        limit,
    )
    return [JobSummary(**dict(row)) for row in rows]


async def get_message(conn: Any, job_id: int) -> BroadcastMessage:
    row = await conn.fetchrow(
        "SELECT text, photo, photo_file_id, button_text, button_url"
        " FROM shared.broadcasts WHERE id = $1",
        job_id,
    )
    if row is None:
        raise BroadcastInputError(f"No broadcast with id {job_id}")
    return BroadcastMessage(**dict(row))


# -- the sender's statements --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one send came to: ``state`` sent / blocked / failed, or pending (not delivered:
    flood control or a paused job; sent again later)."""

    telegram_id: int
    state: str
    reason: str | None = None


async def runnable_jobs(conn: Any, bot_name: str) -> list[int]:
    rows = await conn.fetch(
        "SELECT id FROM shared.broadcasts WHERE bot_name = $1 AND state = 'running'"
        " AND (not_before IS NULL OR not_before <= now()) ORDER BY id",
        bot_name,
    )
    return [int(row["id"]) for row in rows]


async def is_running(conn: Any, job_id: int) -> bool:
    """Still to send: a sender that took the job's lock just after another finished it stops."""
    state = await conn.fetchval("SELECT state FROM shared.broadcasts WHERE id = $1", job_id)
    return bool(state == "running")


async def recover_in_flight(conn: Any, job_id: int) -> int:
    """Rows a previous sender left in flight (it died or lost the database): maybe delivered,
    so ``unknown``, never resent. Run only by the job's lock holder."""
    status = await conn.execute(
        "UPDATE shared.broadcast_recipients SET state = 'unknown', updated_at = now(),"
        " reason = 'in flight when the sender stopped'"
        " WHERE broadcast_id = $1 AND state = 'in_flight'",
        job_id,
    )
    return int(status.split()[-1])


async def claim_window(conn: Any, job_id: int, size: int) -> list[int]:
    """Up to ``size`` pending recipients, committed ``in_flight`` before anything is sent;
    none when the job is no longer running (paused or cancelled meanwhile)."""
    rows = await conn.fetch(
        """UPDATE shared.broadcast_recipients r SET state = 'in_flight', updated_at = now()
           WHERE (r.broadcast_id, r.telegram_id) IN (
               SELECT p.broadcast_id, p.telegram_id FROM shared.broadcast_recipients p
               JOIN shared.broadcasts b ON b.id = p.broadcast_id AND b.state = 'running'
               WHERE p.broadcast_id = $1 AND p.state = 'pending'
               ORDER BY p.telegram_id LIMIT $2 FOR UPDATE OF p SKIP LOCKED)
           RETURNING r.telegram_id""",
        job_id,
        size,
    )
    return sorted(int(row["telegram_id"]) for row in rows)


async def save_outcomes(
    conn: asyncpg.Connection, job_id: int, bot_name: str, outcomes: Sequence[Outcome]
) -> None:
    """One transaction: the recipients' states (only rows still in flight: a row another
    sender already called unknown stays unknown) and the audience rows of blocked users."""
    if not outcomes:
        return
    async with conn.transaction():
        await conn.execute(
            """UPDATE shared.broadcast_recipients r
               SET state = o.state, reason = o.reason, updated_at = now()
               FROM unnest($2::bigint[], $3::text[], $4::text[]) AS o(telegram_id, state, reason)
               WHERE r.broadcast_id = $1 AND r.telegram_id = o.telegram_id
                 AND r.state = 'in_flight'""",
            job_id,
            [o.telegram_id for o in outcomes],
            [o.state for o in outcomes],
            [o.reason for o in outcomes],
        )
        blocked = [o.telegram_id for o in outcomes if o.state == "blocked"]
        if blocked:
            await apply_marks(conn, [AudienceMark(bot_name, user, True) for user in blocked])


async def finish_if_done(conn: Any, job_id: int) -> bool:
    """running -> done when no recipient is pending or in flight."""
    status = await conn.execute(
        """UPDATE shared.broadcasts SET state = 'done', finished_at = now()
           WHERE id = $1 AND state = 'running' AND NOT EXISTS (
               SELECT 1 FROM shared.broadcast_recipients
               WHERE broadcast_id = $1 AND state IN ('pending', 'in_flight'))""",
        job_id,
    )
    return bool(status == "UPDATE 1")


async def hold_job(conn: Any, job_id: int, seconds: float) -> None:
    """Flood control: no send of this job (by any sender) for ``seconds``."""
    await conn.execute(
        "UPDATE shared.broadcasts SET not_before = now() + make_interval(secs => $2) WHERE id = $1",
        job_id,
        seconds,
    )


async def pause_job(conn: Any, job_id: int, reason: str) -> None:
    await conn.execute(
        "UPDATE shared.broadcasts SET state = 'paused', pause_reason = $2"
        " WHERE id = $1 AND state = 'running'",
        job_id,
        reason,
    )


async def store_file_id(conn: Any, job_id: int, file_id: str) -> None:
    """The photo is on Telegram's side: later sends reuse its file_id instead of the bytes."""
    await conn.execute(
        "UPDATE shared.broadcasts SET photo_file_id = $2, photo = NULL WHERE id = $1",
        job_id,
        file_id,
    )


async def set_progress_message(conn: Any, job_id: int, chat_id: int, message_id: int) -> None:
    """Where the admin watches the job: the message edited with its progress."""
    await conn.execute(
        "UPDATE shared.broadcasts SET admin_chat_id = $2, progress_message_id = $3 WHERE id = $1",
        job_id,
        chat_id,
        message_id,
    )


async def progress_message(conn: Any, job_id: int) -> tuple[int, int] | None:
    row = await conn.fetchrow(
        "SELECT admin_chat_id, progress_message_id FROM shared.broadcasts WHERE id = $1",
        job_id,
    )
    if row is None or row["admin_chat_id"] is None or row["progress_message_id"] is None:
        return None
    return int(row["admin_chat_id"]), int(row["progress_message_id"])
