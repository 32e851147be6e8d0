"""The admin's broadcast commands in every bot: ``/broadcast`` (message -> preview with the
audience size -> Confirm/Cancel -> one progress message with Pause/Resume/Cancel) and
``/broadcasts`` (recent jobs).

Only ``ADMIN_USER_IDS`` may use them. Anyone else is logged and the update goes on to the bot's
own routers, so they get the bot's usual answer to an unknown command. The router is included
by ``build_dispatcher`` before the bot's routers; the job itself is sent by the running bot's
sender (broadcast_sender.py), whichever replica holds it.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from aiogram import Bot, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from ecosystem_shared import broadcast_store as store
from ecosystem_shared.broadcast_message import BroadcastInputError, BroadcastMessage
from ecosystem_shared.broadcast_sender import BroadcastSender, deliver
from ecosystem_shared.broadcast_texts import BroadcastTexts, broadcast_texts
from ecosystem_shared.config import SharedSettings
from ecosystem_shared.db import Database
from ecosystem_shared.exceptions import DatabaseUnavailable

__all__ = ["BroadcastAction", "ProgressReporter", "broadcast_router"]

logger = logging.getLogger(__name__)

PROGRESS_EVERY = 5.0  # seconds between two edits of a progress message (Telegram's per-chat pace)
RECENT_JOBS = 10


class BroadcastForm(StatesGroup):
    message = State()


class BroadcastAction(CallbackData, prefix="bc"):
    action: str  # confirm, cancel, pause, resume
    job: int


def _keyboard(texts: BroadcastTexts, job: store.JobSummary) -> InlineKeyboardMarkup | None:
    buttons: list[InlineKeyboardButton] = []
    if job.state == "draft":
        buttons.append(_button(texts.confirm, "confirm", job.id))
    if job.state == "running":
        buttons.append(_button(texts.pause, "pause", job.id))
    if job.state == "paused":
        buttons.append(_button(texts.resume, "resume", job.id))
    if job.state in ("draft", "running", "paused"):
        buttons.append(_button(texts.cancel, "cancel", job.id))
    return InlineKeyboardMarkup(inline_keyboard=[buttons]) if buttons else None


def _button(text: str, action: str, job_id: int) -> InlineKeyboardButton:
    return InlineKeyboardButton(
        text=text, callback_data=BroadcastAction(action=action, job=job_id).pack()
    )


def progress_text(texts: BroadcastTexts, job: store.JobSummary, rate: float) -> str:
    eta = str(timedelta(seconds=round(job.left / rate)))
    text = texts.progress.format(
        id=job.id,
        state=texts.states.get(job.state, job.state),
        sent=job.sent,
        total=job.total,
        blocked=job.blocked,
        failed=job.failed,
        unknown=job.unknown,
        left=job.left,
        eta=eta,
    )
    if job.state == "paused" and job.pause_reason:
        text += "\n" + texts.paused_because.format(reason=job.pause_reason)
    return text


class ProgressReporter:
    """Edits a job's progress message: at most every :data:`PROGRESS_EVERY` seconds while it
    runs, and once more when it stops (paused, cancelled, done)."""

    def __init__(self, bot: Bot, db: Database, settings: SharedSettings) -> None:
        self.bot = bot
        self.db = db
        self.texts = broadcast_texts(settings.LANGUAGE)
        self.rate = settings.BROADCAST_RATE
        self._last: dict[int, tuple[float, str]] = {}  # job -> (monotonic time, text shown)

    async def report(self, job_id: int, *, force: bool = False) -> None:
        async with self.db.acquire() as conn:
            target = await store.progress_message(conn, job_id)
            if target is None:
                return  # made by the command line: nobody to show it to
            job = await store.get_job(conn, job_id)
        last_time, last_text = self._last.get(job_id, (0.0, ""))
        now = time.monotonic()
        if job.state == "running" and not force and now - last_time < PROGRESS_EVERY:
            return
        text = progress_text(self.texts, job, self.rate)
        if text == last_text:
            return  # Telegram refuses an edit that changes nothing
        self._last[job_id] = (now, text)
        try:
            await self.bot.edit_message_text(
                text=text,
                chat_id=target[0],
                message_id=target[1],
                reply_markup=_keyboard(self.texts, job),
            )
        except TelegramAPIError as error:  # deleted by the admin, say: the job goes on
            logger.warning("Broadcast %s: progress message not updated: %s", job_id, error)


def _is_admin(settings: SharedSettings, user_id: int | None) -> bool:
    return user_id is not None and user_id in settings.ADMIN_USER_IDS


def _refuse(event: Message | CallbackQuery, what: str) -> None:
    user = event.from_user.id if event.from_user else None
    logger.warning("Broadcast command %s from %s, who is not in ADMIN_USER_IDS", what, user)
    raise SkipHandler  # the bot's own routers answer as to any unknown command


async def ask_for_message(message: Message, state: FSMContext, settings: SharedSettings) -> None:
    if not _is_admin(settings, message.from_user.id if message.from_user else None):
        _refuse(message, "/broadcast")
    await state.set_state(BroadcastForm.message)
    await message.answer(broadcast_texts(settings.LANGUAGE).ask)


def _as_broadcast(message: Message) -> BroadcastMessage | None:
    if message.photo:
        return BroadcastMessage(message.html_text, photo_file_id=message.photo[-1].file_id)
    if message.text is not None:
        return BroadcastMessage(message.html_text)
    return None


async def receive_message(
    message: Message,
    state: FSMContext,
    settings: SharedSettings,
    db: Database,
    bot: Bot,
) -> None:
    texts = broadcast_texts(settings.LANGUAGE)
    if message.text is not None and message.text.strip().lower() in ("/cancel", "/stop"):
        await state.clear()
        await message.answer(texts.aborted)
        return
    content = _as_broadcast(message)
    if content is None:
        await message.answer(texts.not_a_message)
        return  # still waiting for the message
    try:
        async with db.acquire() as conn:
            job_id, audience = await store.create_job(
                conn,
                settings.BOT_NAME,
                content,
                store.AudienceFilter(),
                created_by=message.from_user.id if message.from_user else None,
                admin_chat_id=message.chat.id,
            )
            job = await store.get_job(conn, job_id)
    except BroadcastInputError as error:
        await message.answer(texts.refused.format(reason=error), parse_mode=None)
        return
    except DatabaseUnavailable:
        await message.answer(texts.unavailable)
        return
    await state.clear()
    try:
        await deliver(bot, message.chat.id, content)  # the message as recipients will see it
    except TelegramBadRequest as error:  # what the local check could not know
        async with db.acquire() as conn:
            await store.change_state(conn, job_id, "cancel")
        await message.answer(texts.refused.format(reason=error.message), parse_mode=None)
        return
    await message.answer(
        texts.preview.format(audience=audience), reply_markup=_keyboard(texts, job)
    )


async def on_action(
    query: CallbackQuery,
    callback_data: BroadcastAction,
    settings: SharedSettings,
    db: Database,
    broadcasts: BroadcastSender,
    broadcast_progress: ProgressReporter,
) -> None:
    if not _is_admin(settings, query.from_user.id):
        _refuse(query, callback_data.action)
    texts = broadcast_texts(settings.LANGUAGE)
    job_id = callback_data.job
    message = query.message if isinstance(query.message, Message) else None
    try:
        async with db.acquire() as conn:
            if callback_data.action == "confirm":
                if not await store.start_job(conn, job_id):  # a second press starts nothing
                    job = await store.get_job(conn, job_id)
                    state = texts.states.get(job.state, job.state)
                    await query.answer(texts.not_a_draft.format(state=state))
                    return
                if message is not None:
                    await store.set_progress_message(
                        conn, job_id, message.chat.id, message.message_id
                    )
            else:
                reason = f"by {query.from_user.id}" if callback_data.action == "pause" else None
                await store.change_state(conn, job_id, callback_data.action, reason=reason)
                if message is not None and callback_data.action == "cancel":
                    await store.set_progress_message(
                        conn, job_id, message.chat.id, message.message_id
                    )
    except BroadcastInputError as error:
        await query.answer(str(error))
        return
    except DatabaseUnavailable:
        await query.answer(texts.unavailable)
        return
    await query.answer()
    if callback_data.action in ("confirm", "resume"):
        broadcasts.wake()
    await broadcast_progress.report(job_id, force=True)


async def list_jobs(message: Message, settings: SharedSettings, db: Database) -> None:
    if not _is_admin(settings, message.from_user.id if message.from_user else None):
        _refuse(message, "/broadcasts")
    texts = broadcast_texts(settings.LANGUAGE)
    try:
        async with db.acquire() as conn:
            jobs = await store.list_jobs(conn, settings.BOT_NAME, RECENT_JOBS)
    except DatabaseUnavailable:
        await message.answer(texts.unavailable)
        return
    lines = [progress_text(texts, job, settings.BROADCAST_RATE) for job in jobs]
    await message.answer("\n\n".join(lines) or texts.none_yet, parse_mode=None)


def broadcast_router() -> Router:
    """A fresh router per dispatcher (aiogram attaches a router to one parent only)."""
    router = Router(name="ecosystem-broadcasts")
    router.message.register(ask_for_message, Command("broadcast"))
    router.message.register(list_jobs, Command("broadcasts"))
    router.message.register(receive_message, BroadcastForm.message)
    router.callback_query.register(on_action, BroadcastAction.filter())
    return router
