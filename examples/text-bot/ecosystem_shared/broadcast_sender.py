"""The running bot sends its broadcast jobs (a background task of ecosystem_shared/runtime.py).

Guarantees, whatever runs (replicas, restarts, a lost database):

- **One sender per job**: a sender works on a job only while it holds the session advisory lock
  ``(BROADCAST_LOCK_CLASS, job id)`` on a connection it keeps for the run. A dead process or a
  dropped connection releases it.
- **Never twice**: recipients are taken ``pending -> in_flight`` and committed before their
  messages go out, at most one window (about a second of sends) at a time; outcomes are written
  after. The next lock holder turns whatever is left in flight into ``unknown`` (maybe
  delivered, never resent), so ``unknown`` is at most one window per crash.
- **Pace**: ``BROADCAST_RATE`` sends per second per process, one slot after another, so that
  the rest of Telegram's ~30/s budget stays for replies. A 429 holds the whole job for
  ``retry_after`` (recorded in the job, honoured by any sender); the refused and not yet sent
  recipients go back to pending.
- **Database gone mid-job**: outcomes not yet written are kept and written (to rows still in
  flight) once the database is back; the job resumes then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup, Message

from ecosystem_shared import broadcast_store as store
from ecosystem_shared.audience_tracking import means_user_gone
from ecosystem_shared.broadcast_message import BroadcastMessage
from ecosystem_shared.broadcast_store import Outcome
from ecosystem_shared.db import CONNECTION_ERRORS, Database
from ecosystem_shared.exceptions import DatabaseUnavailable
from ecosystem_shared.telegram import NO_RETRIES

__all__ = ["BROADCAST_LOCK_CLASS", "BroadcastSender", "Pacer", "deliver"]

logger = logging.getLogger(__name__)

BROADCAST_LOCK_CLASS = 0x62726463  # "brdc": the first key of pg_try_advisory_lock(int, int)
MAX_WINDOW = 100
# Sends that failed in a row (not "chat not found": every message fails the same way, bad
# markup or a photo Telegram refuses) before the job is paused with the last reason.
FAILURES_TO_PAUSE = 20

# Raised inside db.acquire(), a lost connection is asyncpg's own error (turned into
# DatabaseUnavailable on the way out).
_SAVE_ERRORS: tuple[type[BaseException], ...] = (DatabaseUnavailable, *CONNECTION_ERRORS)

ProgressHook = Callable[[int], Awaitable[None]]


class Pacer:
    """Hands out send slots ``1/rate`` seconds apart (shared by every job of the process)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate
        self._clock = clock
        self._next = 0.0

    async def slot(self) -> None:
        now = self._clock()
        start = max(now, self._next)
        self._next = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)


@dataclass
class _Window:
    """One window's shared state: a 429 stops the sends that have not started."""

    hold: float = 0.0
    pause_reason: str | None = None
    outcomes: list[Outcome] = field(default_factory=list)
    file_id: str | None = None


class BroadcastSender:
    def __init__(
        self,
        db: Database,
        bot: Bot,
        bot_name: str,
        rate: float,
        *,
        poll_seconds: float = 2.0,
        retry_delays: tuple[float, ...] = (1.0, 3.0),
    ) -> None:
        self.db = db
        self.bot = bot
        self.bot_name = bot_name
        self.pacer = Pacer(rate)
        self.window = max(1, min(MAX_WINDOW, math.ceil(rate)))
        self.poll_seconds = poll_seconds
        self.retry_delays = retry_delays
        self.on_progress: list[ProgressHook] = []  # awaited after each window (job id)
        self._unsaved: dict[int, list[Outcome]] = {}  # written when the database is back
        self._wakeup = asyncio.Event()
        self._waiting = False  # the database was away at the last look

    def wake(self) -> None:
        """A job was started in this process: look now rather than at the next poll."""
        self._wakeup.set()

    async def run(self) -> None:
        """Until cancelled: send every running job of this bot that no other sender holds."""
        while True:
            try:
                if self.db.available:
                    async with self.db.acquire() as conn:
                        jobs = await store.runnable_jobs(conn, self.bot_name)
                    for job_id in jobs:
                        await self._run_job(job_id)
                    self._waiting = False
            except DatabaseUnavailable as error:
                if not self._waiting:  # once per outage, not at every poll
                    logger.warning("Broadcasts wait for the database: %s", error)
                self._waiting = True
            except Exception:
                logger.exception("Broadcast sender failed; trying again")
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.poll_seconds)

    async def _run_job(self, job_id: int) -> None:
        async with self.db.acquire() as conn:
            locked = await conn.fetchval(
                "SELECT pg_try_advisory_lock($1::int, $2::int)",
                BROADCAST_LOCK_CLASS,
                job_id % 2**31,
            )
            if not locked:
                return  # another process sends it
            try:
                await self._send_job(conn, job_id)
            finally:
                if not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.execute(
                            "SELECT pg_advisory_unlock($1::int, $2::int)",
                            BROADCAST_LOCK_CLASS,
                            job_id % 2**31,
                        )

    async def _send_job(self, conn: asyncpg.Connection, job_id: int) -> None:
        unsaved = self._unsaved.pop(job_id, [])
        if unsaved:
            await store.save_outcomes(conn, job_id, self.bot_name, unsaved)
        lost = await store.recover_in_flight(conn, job_id)
        if lost:
            logger.warning("Broadcast %s: %s recipients were in flight: unknown", job_id, lost)
        if not await store.is_running(conn, job_id):
            return  # finished, paused or cancelled between the look-up and the lock
        message = await store.get_message(conn, job_id)
        failures = 0
        logger.info("Broadcast %s: sending", job_id)
        while True:
            size = self.window if message.photo is None else 1  # upload once, then the file_id
            recipients = await store.claim_window(conn, job_id, size)
            if not recipients:
                if await store.finish_if_done(conn, job_id):
                    logger.info("Broadcast %s: done", job_id)
                await self._progress(job_id)
                return
            window = await self._send_window(message, recipients)
            try:
                await store.save_outcomes(conn, job_id, self.bot_name, window.outcomes)
                if window.file_id is not None and message.photo is not None:
                    await store.store_file_id(conn, job_id, window.file_id)
                    message = BroadcastMessage(
                        message.text, None, window.file_id, message.button_text, message.button_url
                    )
            except _SAVE_ERRORS:
                # written to the rows still in flight once the database is back
                self._unsaved[job_id] = window.outcomes
                raise
            failures = _failures_in_a_row(failures, window.outcomes)
            if failures >= FAILURES_TO_PAUSE:
                reason = next(o.reason for o in reversed(window.outcomes) if o.state == "failed")
                window.pause_reason = f"{failures} sends failed in a row: {reason}"
            await self._progress(job_id)
            if window.pause_reason is not None:
                logger.error("Broadcast %s paused: %s", job_id, window.pause_reason)
                await store.pause_job(conn, job_id, window.pause_reason)
                return
            if window.hold:
                logger.warning("Broadcast %s: flood control, waiting %g s", job_id, window.hold)
                await store.hold_job(conn, job_id, window.hold)
                await asyncio.sleep(window.hold)

    async def _progress(self, job_id: int) -> None:
        for hook in self.on_progress:
            try:
                await hook(job_id)
            except Exception:
                logger.exception("Broadcast progress hook failed")

    async def _send_window(self, message: BroadcastMessage, recipients: list[int]) -> _Window:
        window = _Window()
        await asyncio.gather(*(self._send_one(message, user, window) for user in recipients))
        return window

    async def _send_one(self, message: BroadcastMessage, user: int, window: _Window) -> None:
        NO_RETRIES.set(True)  # this task's requests: 429s and errors are handled here
        attempt = 0
        while True:
            await self.pacer.slot()
            if window.hold or window.pause_reason is not None:
                window.outcomes.append(Outcome(user, "pending"))  # never sent: later
                return
            try:
                sent = await deliver(self.bot, user, message)
            except TelegramRetryAfter as error:
                window.hold = max(window.hold, float(error.retry_after))
                window.outcomes.append(Outcome(user, "pending"))
                return
            except TelegramUnauthorizedError as error:
                window.pause_reason = f"the bot token was refused: {error.message}"
                window.outcomes.append(Outcome(user, "pending"))
                return
            except TelegramForbiddenError as error:
                blocked = means_user_gone(error)
                window.outcomes.append(
                    Outcome(user, "blocked" if blocked else "failed", error.message)
                )
                return
            except TelegramBadRequest as error:
                window.outcomes.append(Outcome(user, "failed", error.message))
                return
            except (TelegramServerError, TelegramNetworkError) as error:
                if attempt >= len(self.retry_delays):
                    window.outcomes.append(
                        Outcome(user, "failed", f"{type(error).__name__}: {error}")
                    )
                    return
                await asyncio.sleep(self.retry_delays[attempt])
                attempt += 1
                continue
            except Exception as error:
                logger.exception("Broadcast send to %s failed", user)
                window.outcomes.append(Outcome(user, "failed", f"{type(error).__name__}: {error}"))
                return
            if sent.photo:
                window.file_id = sent.photo[-1].file_id
            window.outcomes.append(Outcome(user, "sent"))
            return


async def deliver(
    bot: Bot, chat_id: int, message: BroadcastMessage, *, with_button: bool = True
) -> Message:
    """Send the broadcast's message to one chat (the admin's preview uses it too)."""
    markup = None
    if with_button and message.button_text and message.button_url:
        button = InlineKeyboardButton(text=message.button_text, url=message.button_url)
        markup = InlineKeyboardMarkup(inline_keyboard=[[button]])
    if message.photo is not None:
        photo: BufferedInputFile | str = BufferedInputFile(message.photo, "photo")
    elif message.photo_file_id is not None:
        photo = message.photo_file_id
    else:
        return await bot.send_message(chat_id, message.text, parse_mode="HTML", reply_markup=markup)
    caption = message.text or None
    return await bot.send_photo(
        chat_id, photo, caption=caption, parse_mode="HTML", reply_markup=markup
    )


def _failures_in_a_row(before: int, outcomes: list[Outcome]) -> int:
    count = before
    for outcome in outcomes:
        if outcome.state == "sent":
            count = 0
        elif outcome.state == "failed" and "chat not found" not in (outcome.reason or ""):
            count += 1
    return count
