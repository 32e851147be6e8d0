"""Analytics for every bot: users in ``shared.users``, events in ``shared.analytics_events``.

Tracking stays off the handler's path: rows go into a bounded in-process buffer that a
background task writes in batches (one transaction per batch, events by binary COPY). When the
buffer is full the new row is dropped and counted; while the database is down rows are kept and
retried, so an outage shorter than the buffer loses nothing. ``track_*`` never raises.

Counters (attributes, read in-process; :meth:`Analytics.counters` has them all): ``written``,
``dropped``, ``pending``, ``upserts_deferred``, and its database's ``connections_lost``.
``close()`` logs them on one line (:data:`COUNTERS_PREFIX` + JSON) that :func:`parse_counters`
reads back from a process's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Hashable
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

import asyncpg

from ecosystem_shared.analytics_store import (
    RETRYABLE,
    Row,
    UserRow,
    audience_sights,
    first_sights,
    upsert_users,
    write_batch,
)
from ecosystem_shared.audience import AudienceMark, SightKey, StoredSight
from ecosystem_shared.db import Database
from ecosystem_shared.local_days import local_day_bounds
from ecosystem_shared.rollups import roll_up_finished_days
from ecosystem_shared.sanitize import NAME_LIMIT, clean_event_data, clean_id, clean_text
from ecosystem_shared.stats import (
    BotStats,
    DailyStats,
    query_daily_stats,
    query_day_stats,
)

logger = logging.getLogger(__name__)
K = TypeVar("K", bound=Hashable)

__all__ = ["COUNTERS_PREFIX", "Analytics", "BotStats", "DailyStats", "parse_counters"]

COUNTERS_PREFIX = "Analytics counters: "

SYNC_TIMEOUT = 2.0  # the one database call a /start of an unknown user may wait for
OP_TIMEOUT = 10.0  # each statement of a batch
CLOSE_TIMEOUT = 5.0
DROP_WARNING_SECONDS = 60.0


async def _wait(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)


class Analytics:
    def __init__(
        self,
        db: Database,
        bot_name: str,
        *,
        enabled: bool = True,
        buffer_size: int = 10_000,
        batch_size: int = 500,
        flush_seconds: float = 1.0,
        known_users: int = 100_000,
    ) -> None:
        self.db = db
        self.bot_name = clean_text(bot_name, NAME_LIMIT) or "bot"
        # Without a database there is nothing to buffer for: do not fill up and warn.
        self._enabled = enabled and db.enabled
        self._capacity = max(buffer_size, 1)
        self._batch_size = max(batch_size, 1)
        self._flush_seconds = flush_seconds
        self._buffer: deque[Row] = deque()
        self._known: OrderedDict[int, None] = OrderedDict()  # ids known to be in shared.users
        self._known_limit = known_users
        # (user, bot) pairs whose first sight is stored: their events skip that upsert.
        self._known_pairs: OrderedDict[tuple[int, str], None] = OrderedDict()
        # (bot, user) -> the last sight and language this process wrote to the audience.
        self._stored_sights: OrderedDict[SightKey, StoredSight] = OrderedDict()
        self._dropped = 0
        self.written = 0  # rows committed (users and events)
        # /start upserts that could not run at once (database busy or lost) and went to the
        # buffer: the reply did not learn whether the user was new.
        self.upserts_deferred = 0
        self._unreported_drops = 0
        self._drop_reason = ""
        self._last_drop_warning = -DROP_WARNING_SECONDS
        self._wake = asyncio.Event()
        self._reconnected = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        # Users waiting for the group upsert of _register_batches: latest row, waiting /starts.
        self._registering: dict[int, tuple[UserRow, list[asyncio.Future[bool]]]] = {}
        self._register_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._blocked = False  # the last flush left rows because the database was unavailable

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def dropped(self) -> int:
        """Rows lost since start: buffer full, or rejected by the database."""
        return self._dropped

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def counters(self) -> dict[str, int]:
        return {
            "written": self.written,
            "dropped": self.dropped,
            "pending": self.pending,
            "upserts_deferred": self.upserts_deferred,
            "connections_lost": self.db.connections_lost,  # outages of its database
        }

    async def start(self) -> None:
        if not self._enabled or self._task is not None:
            return
        self.db.on_connected.append(self._on_db_connected)
        self._task = asyncio.create_task(self._run(), name="analytics-flush")

    async def close(self, timeout: float = CLOSE_TIMEOUT) -> None:
        """Stop the background task and write what can be written within ``timeout``."""
        deadline = time.monotonic() + timeout
        registering = self._register_task
        if registering is not None and not registering.done():
            # /starts waiting for their upsert: stored by it, or put in the buffer flushed below.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(registering), SYNC_TIMEOUT + OP_TIMEOUT)
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            self._wake.set()
            self._reconnected.set()
            try:
                await asyncio.wait_for(task, timeout)
            except TimeoutError:
                pass
            except Exception:
                logger.exception("Analytics flush task failed")
        with contextlib.suppress(ValueError):
            self.db.on_connected.remove(self._on_db_connected)
        if self._buffer:
            await self._flush(deadline)
        self._report_drops()
        if self._buffer:
            logger.warning("Analytics: %d rows not written at exit", len(self._buffer))
        if self._enabled:
            logger.info("%s%s", COUNTERS_PREFIX, json.dumps(self.counters(), sort_keys=True))

    # -- tracking (never raises, never waits for the database except a new user's upsert) ----

    async def track_user_start(
        self,
        telegram_id: int | None,
        username: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        language_code: str | None = None,
        bot_name: str | None = None,
    ) -> bool:
        """Record /start; True when the user is new to the whole ecosystem."""
        if not self._enabled:
            return False
        try:
            user_id = clean_id(telegram_id)
            now = datetime.now(UTC)
            is_new = False
            if user_id is not None:
                user = UserRow(user_id, username, first_name or "", last_name, language_code, now)
                is_new = await self._register(user)
            self._add_event(user_id, "user_start", {"new": True} if is_new else None, bot_name, now)
            return is_new
        except Exception:
            logger.exception("Analytics: track_user_start failed")
            return False

    async def track_event(
        self,
        telegram_id: int | None,
        event_type: str,
        event_data: Any = None,
        *,
        bot_name: str | None = None,
    ) -> None:
        if not self._enabled:
            return
        try:
            self._add_event(clean_id(telegram_id), event_type, event_data, bot_name)
        except Exception:
            logger.exception("Analytics: track_event failed")

    async def track_photos_sent(
        self,
        telegram_id: int | None,
        count: int,
        *,
        bot_name: str | None = None,
        event_data: dict[str, Any] | None = None,
    ) -> None:
        await self.track_event(
            telegram_id, "photo_sent", {**(event_data or {}), "count": count}, bot_name=bot_name
        )

    async def track_video_sent(
        self,
        telegram_id: int | None,
        *,
        bot_name: str | None = None,
        event_data: dict[str, Any] | None = None,
    ) -> None:
        await self.track_event(telegram_id, "video_sent", event_data or {}, bot_name=bot_name)

    async def track_error(
        self, telegram_id: int | None, error_message: str, *, bot_name: str | None = None
    ) -> None:
        await self.track_event(telegram_id, "error", {"error": error_message}, bot_name=bot_name)

    # -- reading ---------------------------------------------------------------------------

    def mark_blocked(
        self, telegram_id: int | None, *, bot_name: str | None = None, at: datetime | None = None
    ) -> None:
        """The user blocked the bot or deleted the account (a ``my_chat_member`` "kicked", a
        403 to a send): buffered like an event, applied to ``shared.bot_audience`` with the next
        batch. Never raises, never waits."""
        self._add_mark(telegram_id, True, bot_name, at, None)

    def mark_reachable(
        self,
        telegram_id: int | None,
        *,
        language_code: str | None = None,
        bot_name: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """The user can be messaged again (``my_chat_member`` "member"): buffered like
        :meth:`mark_blocked`."""
        self._add_mark(telegram_id, False, bot_name, at, language_code)

    def _add_mark(
        self,
        telegram_id: int | None,
        blocked: bool,
        bot_name: str | None,
        at: datetime | None,
        language_code: str | None,
    ) -> None:
        user_id = clean_id(telegram_id)
        if not self._enabled or user_id is None:
            return
        try:
            bot = (clean_text(bot_name, NAME_LIMIT) if bot_name else None) or self.bot_name
            when = at or datetime.now(UTC)
            self._enqueue(AudienceMark(bot, user_id, blocked, when, language_code))
        except Exception:
            logger.exception("Analytics: audience mark failed")

    async def get_daily_stats(self, bot_name: str | None = None) -> DailyStats:
        """Counts of the last 24 h, per bot (one bot with ``bot_name``); empty without a DB."""
        end = datetime.now(UTC)
        start = end - timedelta(hours=24)
        if not self._enabled:
            return DailyStats(start, end)
        await self._flush(time.monotonic() + OP_TIMEOUT)
        try:
            async with self.db.acquire(timeout=OP_TIMEOUT) as conn:
                return await query_daily_stats(conn, start, end, bot_name, timeout=OP_TIMEOUT)
        except (*RETRYABLE, asyncpg.PostgresError) as error:
            logger.warning("Analytics: daily stats unavailable: %s", error)
            return DailyStats(start, end)

    async def get_day_stats(self, day: date, timezone: str) -> DailyStats:
        """The figures of a local day of ``timezone`` (the digest's): finished days are rolled up
        first if they were not, then read from the rollups; empty without a DB."""
        start, end = local_day_bounds(day, timezone)
        if not self._enabled:
            return DailyStats(start, end)
        await self._flush(time.monotonic() + OP_TIMEOUT)
        try:
            async with self.db.acquire(timeout=OP_TIMEOUT) as conn:
                await roll_up_finished_days(conn, timezone)
                return await query_day_stats(conn, day, timezone, timeout=OP_TIMEOUT)
        except (*RETRYABLE, asyncpg.PostgresError) as error:
            logger.warning("Analytics: stats of %s unavailable: %s", day, error)
            return DailyStats(start, end)

    async def flush(self) -> int:
        """Write everything buffered now; returns the number of rows written."""
        return await self._flush(None)

    # -- internals -------------------------------------------------------------------------

    async def _register(self, user: UserRow) -> bool:
        if user.telegram_id in self._known:
            self._known.move_to_end(user.telegram_id)
            self._enqueue(user)
            return False
        if not self.db.available:
            self.upserts_deferred += 1
            self._enqueue(user)
            return False
        # Unknown here: ask the database whether the user is new to the ecosystem. Concurrent
        # /starts share one upsert (group commit), so a burst costs one round trip, not one each.
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        _, answers = self._registering.get(user.telegram_id, (user, []))
        answers.append(answer)
        self._registering[user.telegram_id] = (user, answers)  # the latest facts win
        if self._register_task is None or self._register_task.done():
            self._register_task = asyncio.create_task(self._register_batches())
        try:
            return await asyncio.wait_for(asyncio.shield(answer), SYNC_TIMEOUT)
        except TimeoutError:
            return False  # the batch still stores the user; only "is new" is lost

    async def _register_batches(self) -> None:
        await asyncio.sleep(0)  # let the /starts already received join the first batch
        while self._registering:
            waiting, self._registering = self._registering, {}
            rows = [row for row, _ in waiting.values()]
            try:
                async with self.db.acquire(timeout=SYNC_TIMEOUT) as conn:
                    inserted = await upsert_users(conn, rows, SYNC_TIMEOUT)
            except Exception as error:  # noqa: BLE001 - fall back to the buffer, tell the log
                logger.warning("Analytics: %d user upserts deferred: %r", len(rows), error)
                self.upserts_deferred += len(rows)
                for row in rows:
                    self._enqueue(row)
                inserted = {}
            else:
                self.written += len(rows)
                self._remember(list(inserted))
            for telegram_id, (_, answers) in waiting.items():
                new = inserted.get(telegram_id, False)
                for answer in answers:
                    if not answer.done():
                        answer.set_result(new)
                    new = False  # two /starts of one new user: one of them is "new"

    def _add_event(
        self,
        telegram_id: int | None,
        event_type: str,
        event_data: Any,
        bot_name: str | None,
        created_at: datetime | None = None,
    ) -> None:
        bot = clean_text(bot_name, NAME_LIMIT) if bot_name else self.bot_name
        self._enqueue(
            (
                telegram_id,
                bot or self.bot_name,
                clean_text(event_type, 128) or "unknown",
                clean_event_data(event_data),
                created_at or datetime.now(UTC),
            )
        )

    def _enqueue(self, item: Row) -> None:
        if len(self._buffer) >= self._capacity:
            self._count_drops(1, "buffer full")
            return
        self._buffer.append(item)
        if len(self._buffer) >= self._batch_size:
            self._wake.set()

    def _count_drops(self, count: int, why: str) -> None:
        self._dropped += count
        self._unreported_drops += count
        self._drop_reason = why
        if time.monotonic() - self._last_drop_warning >= DROP_WARNING_SECONDS:
            self._report_drops()

    def _report_drops(self) -> None:
        """Log the drops not logged yet (warnings are rate-limited; the rest are told later:
        on the next warning, when the database returns, or at exit)."""
        if not self._unreported_drops:
            return
        logger.warning(
            "Analytics: dropped %d rows (%s; %d since start)",
            self._unreported_drops,
            self._drop_reason,
            self._dropped,
        )
        self._unreported_drops = 0
        self._last_drop_warning = time.monotonic()

    def _remember(self, ids: list[int], batch: list[Row] | None = None) -> None:
        _keep_recent(self._known, ids, self._known_limit)
        if batch is not None:
            events = [row for row in batch if isinstance(row, tuple)]
            _keep_recent(self._known_pairs, list(first_sights(events)), self._known_limit)
            for sight in audience_sights(batch, self._stored_sights):  # what the batch wrote
                key = (sight.bot_name, sight.telegram_id)
                known = self._stored_sights.get(key, (sight.last, None))[1]
                self._stored_sights[key] = (sight.last, sight.language_code or known)
                self._stored_sights.move_to_end(key)
            while len(self._stored_sights) > self._known_limit:
                self._stored_sights.popitem(last=False)

    async def _on_db_connected(self) -> None:
        self._report_drops()  # the full count of an outage, not only its first drop
        self._reconnected.set()

    async def _run(self) -> None:
        while not self._stopping:
            await _wait(self._wake, self._flush_seconds)
            self._wake.clear()
            self._reconnected.clear()
            try:
                await self._flush(None)
            except Exception:
                logger.exception("Analytics: flush failed")
            if self._blocked and not self._stopping:
                # Rows wait for the database: wait for it (or the timer), do not spin on wakes.
                await _wait(self._reconnected, self._flush_seconds)

    async def _flush(self, deadline: float | None) -> int:
        """Write batches from the left of the buffer until it is empty, the database is not
        available, or ``deadline`` (monotonic) passes. Rows leave the buffer only once committed."""
        written = 0
        async with self._lock:
            self._blocked = bool(self._buffer) and not self.db.available
            while self._buffer and self.db.available:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                batch = list(itertools.islice(self._buffer, self._batch_size))
                try:
                    async with self.db.acquire(timeout=OP_TIMEOUT) as conn:
                        user_ids = await write_batch(
                            conn, batch, OP_TIMEOUT, self._known_pairs, self._stored_sights
                        )
                except RETRYABLE as error:
                    logger.debug("Analytics: batch kept for later: %r", error)
                    self._blocked = True
                    break
                except Exception:
                    logger.exception("Analytics: the database rejected a batch")
                    user_ids = None
                for _ in batch:
                    self._buffer.popleft()
                if user_ids is None:
                    self._count_drops(len(batch), "rejected by the database")
                else:
                    written += len(batch)
                    self._remember(user_ids, batch)
            self.written += written
        return written


def _keep_recent(recent: OrderedDict[K, None], keys: list[K], limit: int) -> None:
    """Mark ``keys`` most recently seen in ``recent``; forget the oldest beyond ``limit``."""
    for key in keys:
        recent[key] = None
        recent.move_to_end(key)
    while len(recent) > limit:
        recent.popitem(last=False)


def parse_counters(output: str) -> dict[str, int] | None:
    """The counters of the last :data:`COUNTERS_PREFIX` line in a process's log (None: none)."""
    found = None
    for line in output.splitlines():
        _, prefix, payload = line.partition(COUNTERS_PREFIX)
        if prefix:
            found = {str(key): int(value) for key, value in json.loads(payload).items()}
    return found
