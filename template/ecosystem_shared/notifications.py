"""Messages to the analytics channel: new users and the daily digest."""

from __future__ import annotations

import html
import logging
from typing import TYPE_CHECKING

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramNetworkError

from ecosystem_shared.sanitize import display_name
from ecosystem_shared.texts import shared_texts

if TYPE_CHECKING:
    from ecosystem_shared.analytics import DailyStats

logger = logging.getLogger(__name__)

MESSAGE_LIMIT = 4096


def split_message(lines: list[str], limit: int = MESSAGE_LIMIT) -> list[str]:
    """Pack lines into as few messages as fit Telegram's length limit."""
    chunks: list[str] = []
    current = ""
    for line in lines:
        line = line[: limit - 1]
        candidate = f"{current}\n{line}" if current else line
        if len(candidate) > limit:
            chunks.append(current)
            candidate = line
        current = candidate
    if current:
        chunks.append(current)
    return chunks


def format_digest(stats: DailyStats, language: str) -> list[str]:
    texts = shared_texts(language)
    period = f"{stats.period_start:%Y-%m-%d %H:%M} – {stats.period_end:%Y-%m-%d %H:%M} UTC"
    lines = [texts.digest_title.format(period=period)]
    if not stats.bots:
        lines.append(texts.digest_empty)
    for name, bot in sorted(stats.bots.items()):
        lines.append("")
        lines.append(
            texts.digest_line.format(
                bot_name=html.escape(name),
                new_users=bot.new_users,
                starts=bot.starts,
                errors=bot.errors,
            )
        )
        for event_type, count in sorted(bot.events.items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"  • {html.escape(event_type)}: {count}")
    lines.append("")
    lines.append(texts.digest_total.format(new_users=stats.new_users))
    return split_message(lines)


def describe_user(telegram_id: int, username: str | None, first_name: str | None) -> str:
    if username:
        return f"@{display_name(username)}"
    return display_name(first_name or "") or str(telegram_id)


class Notifier:
    """Sends to ``ANALYTICS_CHANNEL_ID``; every method is a no-op without a channel."""

    def __init__(self, bot: Bot, channel_id: int | None, language: str) -> None:
        self.bot = bot
        self.channel_id = channel_id
        self.language = language

    async def _send(self, text: str, *, parse_mode: str | None = None) -> bool:
        if self.channel_id is None:
            return False
        try:
            await self.bot.send_message(
                self.channel_id, text, parse_mode=parse_mode, disable_web_page_preview=True
            )
        except (TelegramAPIError, TelegramNetworkError) as error:
            logger.warning("Channel message not sent: %s", error)
            return False
        return True

    async def new_user(
        self, *, telegram_id: int, username: str | None, first_name: str | None, bot_name: str
    ) -> bool:
        text = shared_texts(self.language).new_user.format(
            bot_name=bot_name,
            user=describe_user(telegram_id, username, first_name),
            telegram_id=telegram_id,
        )
        return await self._send(text)

    async def daily_digest(self, stats: DailyStats) -> bool:
        if self.channel_id is None:
            return False
        sent = True
        for chunk in format_digest(stats, self.language):
            sent = await self._send(chunk, parse_mode="HTML") and sent
        return sent
