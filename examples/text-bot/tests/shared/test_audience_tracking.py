"""The bot keeping shared.bot_audience up to date, against a real PostgreSQL: the analytics
writer's sights and buffered marks, my_chat_member and 403s in the dispatcher (no database
call on the handler's path), and the audience in the digest and /stats. The table itself (the
backfill, block marks, counts): test_audience.py."""

import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from typing import Any

import asyncpg
import pytest
import pytz
from aiogram import Router
from aiogram.exceptions import TelegramBadRequest, TelegramForbiddenError
from aiogram.types import ChatMemberUpdated

from ecosystem_shared.analytics import Analytics
from ecosystem_shared.analytics_store import UserRow
from ecosystem_shared.audience import LAST_SEEN_RESOLUTION
from ecosystem_shared.db import Database
from ecosystem_shared.digest import send_digest_once
from ecosystem_shared.testing.fake_bot_api import FakeBotAPI
from ecosystem_shared.testing.in_process import CHANNEL, InProcessBot, StartInProcess
from ecosystem_shared.texts import shared_texts


async def audience_row(
    db: Database, telegram_id: int, bot_name: str | None = None
) -> asyncpg.Record | None:
    """The user's row (of ``bot_name``; the tests that leave it out have one bot)."""
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT * FROM shared.bot_audience"
            " WHERE telegram_id = $1 AND ($2::text IS NULL OR bot_name = $2)",
            telegram_id,
            bot_name,
        )
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


async def test_the_writer_keeps_sights_and_languages(db: Database) -> None:
    analytics = Analytics(db, "Picture Bot", flush_seconds=3600)
    try:
        # A new user: stored at once; the event waits for the batch, and so does the audience.
        assert await analytics.track_user_start(301, "u", "U", None, "de") is True
        assert await audience_row(db, 301) is None
        await analytics.flush()
        first = await audience_row(db, 301)
        assert first is not None and first["language_code"] == "de"
        assert first["first_seen"] == first["last_seen"] and first["blocked_at"] is None
        # Known now: the next /start (language changed) goes through the buffer with its row.
        await analytics.track_user_start(301, "u", "U", None, "fr")
        await analytics.track_event(301, "photo_sent", bot_name="CRM Bot")
        await analytics.flush()
        again = await audience_row(db, 301, "Picture Bot")
        assert again is not None and again["language_code"] == "fr"
        assert again["first_seen"] == first["first_seen"] < again["last_seen"]
        async with db.acquire() as conn:
            bots = await conn.fetch(
                "SELECT bot_name FROM shared.bot_audience WHERE telegram_id = 301 ORDER BY 1"
            )
        assert [row["bot_name"] for row in bots] == ["CRM Bot", "Picture Bot"]
    finally:
        await analytics.close()


async def test_a_known_sight_is_written_again_only_when_it_says_more(db: Database) -> None:
    """An active user costs one upsert per LAST_SEEN_RESOLUTION, not one per batch."""
    analytics = Analytics(db, "Picture Bot", flush_seconds=3600)
    try:
        start = datetime.now(UTC)
        steps = [
            (timedelta(0), "en", True),  # new pair
            (timedelta(minutes=1), None, False),  # within the resolution: skipped
            (timedelta(minutes=2), "en", False),  # same language: skipped
            (timedelta(minutes=3), "es", True),  # a new language: written
            (LAST_SEEN_RESOLUTION + timedelta(minutes=3, seconds=1), None, True),  # stale: written
        ]
        stored = start
        for offset, language, written in steps:
            if language is not None:
                analytics._enqueue(UserRow(311, None, "U", None, language, start + offset))
            analytics._add_event(311, "photo_sent", None, None, start + offset)
            await analytics.flush()
            row = await audience_row(db, 311)
            assert row is not None
            stored = start + offset if written else stored
            assert row["last_seen"] == stored, offset
    finally:
        await analytics.close()


async def test_buffered_marks_reach_the_table_with_the_next_batch(db: Database) -> None:
    analytics = Analytics(db, "Picture Bot", flush_seconds=3600)
    try:
        await analytics.track_event(302, "photo_sent")
        analytics.mark_blocked(302)
        analytics.mark_blocked(None)  # nobody to mark: ignored
        assert analytics.pending == 2
        assert await analytics.flush() == 2
        row = await audience_row(db, 302)
        assert row is not None and row["blocked_at"] is not None
        assert row["blocked_at"] >= row["last_seen"]
        analytics.mark_reachable(302, language_code="uk")
        await analytics.flush()
        row = await audience_row(db, 302)
        assert row is not None and (row["blocked_at"], row["language_code"]) == (None, "uk")
    finally:
        await analytics.close()


async def test_marks_wait_through_an_outage(db: Database) -> None:
    analytics = Analytics(db, "Picture Bot", flush_seconds=3600)
    try:
        available = db.available
        db._healthy = False  # what a lost connection sets: writes wait, nothing is dropped
        analytics.mark_blocked(303)
        assert await analytics.flush() == 0 and analytics.pending == 1
        db._healthy = available
        assert await analytics.flush() == 1
        row = await audience_row(db, 303)
        assert row is not None and row["blocked_at"] is not None
    finally:
        await analytics.close()


# -- in the dispatcher: my_chat_member and 403s, with no database call on the handler path ----


class HandlerPathCalls:
    """Counts the database connections taken while updates are handled (every query goes
    through ``Database.acquire``), and the statements run on them. Only calls made in
    :meth:`feed` count: the analytics writer's background task runs outside it."""

    def __init__(self, h: InProcessBot, monkeypatch: pytest.MonkeyPatch) -> None:
        self.h = h
        self.acquired = 0
        self.queries: list[str] = []
        self._handling: contextvars.ContextVar[bool] = contextvars.ContextVar(
            "handling", default=False
        )
        original = h.services.db.acquire

        @contextlib.asynccontextmanager
        async def counting(*, timeout: float | None = None) -> AsyncIterator[asyncpg.Connection]:
            counted = self._handling.get()
            self.acquired += counted
            async with original(timeout=timeout) as conn:
                if counted:
                    conn.add_query_logger(self._log)
                try:
                    yield conn
                finally:
                    if counted:
                        conn.remove_query_logger(self._log)

        monkeypatch.setattr(h.services.db, "acquire", counting)

    def _log(self, record: Any) -> None:
        self.queries.append(str(record.query))

    async def feed(self, update: dict[str, Any]) -> None:
        token = self._handling.set(True)
        try:
            await self.h.feed(update)
        finally:
            self._handling.reset(token)


async def test_my_chat_member_flips_the_row_with_no_database_call(
    in_process_bot: StartInProcess, fake_api: FakeBotAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = await in_process_bot(ANALYTICS_FLUSH_SECONDS=3600)
    assert "my_chat_member" in h.dp.resolve_used_update_types()
    await h.feed(fake_api.push_message("/start", user_id=401, language_code="en"))
    await h.analytics.flush()
    calls = HandlerPathCalls(h, monkeypatch)

    await calls.feed(fake_api.push_my_chat_member(401, "kicked"))
    assert h.analytics.pending == 1
    await h.analytics.flush()
    row = await audience_row(h.services.db, 401)
    assert row is not None and row["blocked_at"] is not None

    update = fake_api.push_my_chat_member(401, "member")
    update["my_chat_member"]["from"]["language_code"] = "pt-br"
    await calls.feed(update)
    await calls.feed(fake_api.push_message("/start", user_id=401))  # known: buffered too
    assert (calls.acquired, calls.queries) == (0, [])  # the handler path: buffered only
    await h.analytics.flush()
    row = await audience_row(h.services.db, 401)
    assert row is not None and (row["blocked_at"], row["language_code"]) == (None, "pt-br")


async def test_group_membership_changes_are_not_the_audience(
    in_process_bot: StartInProcess, fake_api: FakeBotAPI
) -> None:
    h = await in_process_bot(ANALYTICS_FLUSH_SECONDS=3600)
    update = fake_api.push_my_chat_member(402, "kicked")
    update["my_chat_member"]["chat"] = fake_api.chat(-100402, "supergroup")
    await h.feed(update)
    assert h.analytics.pending == 0


async def test_a_403_to_a_reply_marks_the_user_blocked_and_is_no_error(
    in_process_bot: StartInProcess,
    fake_api: FakeBotAPI,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = await in_process_bot(ANALYTICS_FLUSH_SECONDS=3600)
    await h.feed(fake_api.push_message("/start", user_id=403))
    await h.analytics.flush()
    calls = HandlerPathCalls(h, monkeypatch)
    fake_api.block(403)  # blocked between sending the message and getting the reply
    fake_api.deactivate(404)
    caplog.set_level(logging.INFO, logger="ecosystem_shared.middlewares.errors")
    await calls.feed(fake_api.push_message("/start", user_id=403))
    await calls.feed(fake_api.push_message("/help", user_id=404))
    assert (calls.acquired, calls.queries) == (0, [])  # /start, both marks: all buffered
    assert [s.error_code for s in fake_api.sends if s.chat_id in (403, 404)][-2:] == [403, 403]
    assert len(fake_api.send_log.select(chat_id=403)) == 2  # no error text tried after the 403
    assert "Unhandled error" not in caplog.text and "not answered" in caplog.text
    assert [type(error) for error in h.errors] == [TelegramForbiddenError] * 2
    await h.analytics.flush()
    for user in (403, 404):
        row = await audience_row(h.services.db, user)
        assert row is not None and row["blocked_at"] is not None, user
    async with h.services.db.acquire() as conn:
        errors = await conn.fetchval(
            "SELECT count(*) FROM shared.analytics_events WHERE event_type = 'error'"
        )
    assert errors == 0


async def test_a_notification_refused_with_403_marks_the_user(
    in_process_bot: StartInProcess, fake_api: FakeBotAPI
) -> None:
    h = await in_process_bot(ANALYTICS_FLUSH_SECONDS=3600)
    fake_api.block(405)
    fake_api.forget_chats(406)
    with pytest.raises(TelegramForbiddenError):
        await h.bot.send_message(405, "news")
    with pytest.raises(TelegramBadRequest):
        await h.bot.send_message(406, "news")  # chat not found: not a block
    fake_api.fail_next(
        "sendMessage", error_code=403, description="Forbidden: bot was kicked from the group chat"
    )
    with pytest.raises(TelegramForbiddenError):
        await h.bot.send_message(-100405, "news")  # a group: not a user's block
    assert h.analytics.pending == 1
    await h.analytics.flush()
    assert await audience_row(h.services.db, 405) is not None
    assert await audience_row(h.services.db, 406) is None


async def test_the_bots_own_my_chat_member_handlers_still_run(
    in_process_bot: StartInProcess, fake_api: FakeBotAPI
) -> None:
    seen: list[str] = []

    async def own(event: ChatMemberUpdated) -> None:
        seen.append(event.new_chat_member.status)

    routes = Router(name="own-members")
    routes.my_chat_member.register(own)
    h = await in_process_bot(routers=[routes], ANALYTICS_FLUSH_SECONDS=3600)
    await h.feed(fake_api.push_my_chat_member(407, "kicked"))
    assert seen == ["kicked"] and h.analytics.pending == 1


# -- the digest and /stats ---------------------------------------------------------------------


async def test_the_digest_and_stats_show_reachable_and_blocked(
    in_process_bot: StartInProcess, fake_api: FakeBotAPI
) -> None:
    zone = "Asia/Tokyo"
    h = await in_process_bot(ANALYTICS_FLUSH_SECONDS=3600, DIGEST_TIMEZONE=zone)
    bot_name = h.analytics.bot_name
    yesterday_noon = datetime.combine(
        datetime.now(UTC).astimezone(pytz.timezone(zone)).date() - timedelta(days=1),
        dt_time(12),
    )
    blocked_at = pytz.timezone(zone).localize(yesterday_noon).astimezone(UTC)
    for user in (501, 502, 503):
        await h.analytics.track_event(user, "photo_sent")
    marks = (blocked_at, blocked_at - timedelta(days=2))  # yesterday there, and before
    h.analytics.mark_blocked(501, at=marks[0])
    h.analytics.mark_blocked(502, at=marks[1])
    h.analytics.mark_blocked(504, at=blocked_at, bot_name="Other Bot")
    await h.analytics.flush()

    day = datetime.now(UTC).astimezone(pytz.timezone(zone)).date()
    assert await send_digest_once(
        h.services.db, h.analytics, h.services.notifier, day=day, timezone=zone
    )
    text = "\n".join(
        str(call.params.get("caption") or call.params.get("text"))
        for call in fake_api.calls(chat_id=CHANNEL)
    )
    audience = shared_texts("en").digest_audience
    assert audience.format(reachable=1, blocked=1) in text  # this bot: 503 reachable
    assert audience.format(reachable=0, blocked=1) in text  # Other Bot: no events, listed
    stats = await h.analytics.get_daily_stats(bot_name)  # /stats: the last 24 hours
    assert set(stats.bots) == {bot_name}
    in_period = sum(stats.period_start <= at < stats.period_end for at in marks)
    assert (stats.bots[bot_name].reachable, stats.bots[bot_name].blocked) == (1, in_period)
