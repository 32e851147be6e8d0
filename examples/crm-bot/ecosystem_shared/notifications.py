"""Messages to the analytics channel: new users and the daily digest (with its chart)."""

from __future__ import annotations

import html
import logging
import re
from typing import TYPE_CHECKING

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramNetworkError
from aiogram.types import BufferedInputFile

from ecosystem_shared.sanitize import display_name
from ecosystem_shared.texts import shared_texts

if TYPE_CHECKING:
    from ecosystem_shared.analytics import DailyStats
    from ecosystem_shared.digest_chart import ChartService

logger = logging.getLogger(__name__)

MESSAGE_LIMIT = 4096
# "Photo caption (may also be used when resending photos by file_id), 0-1024 characters after
# entities parsing" (Bot API, sendPhoto; core.telegram.org/bots/api, read 2026-12-01).
CAPTION_LIMIT = 1024
_TAG = re.compile(r"<[^>]*>")


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
        if bot.reachable is not None:
            lines.append(texts.digest_audience.format(reachable=bot.reachable, blocked=bot.blocked))
        for event_type, count in sorted(bot.events.items(), key=lambda item: (-item[1], item[0])):
            lines.append(f"  • {html.escape(event_type)}: {count}")
    lines.append("")
    lines.append(texts.digest_total.format(new_users=stats.new_users))
    return split_message(lines)


def visible_length(html_text: str) -> int:
    """Length of an HTML message after entity parsing, in UTF-16 code units: an emoji counts
    twice, which errs on the safe side of Telegram's limits."""
    return len(html.unescape(_TAG.sub("", html_text)).encode("utf-16-le")) // 2


async def send_report(bot: Bot, chat_id: int, chunks: list[str], chart: bytes | None) -> bool:
    """HTML ``chunks`` with ``chart``: one photo captioned with the text when it is a single
    chunk that fits :data:`CAPTION_LIMIT`, else the photo followed by the text. A photo that
    Telegram refuses costs only itself: the text is sent as messages then. True if the whole
    text was delivered."""
    if chart is not None:
        fits = len(chunks) == 1 and visible_length(chunks[0]) <= CAPTION_LIMIT
        caption = chunks[0] if fits else None
        try:
            await bot.send_photo(
                chat_id,
                BufferedInputFile(chart, filename="digest.png"),
                caption=caption,
                parse_mode="HTML" if fits else None,
            )
        except (TelegramAPIError, TelegramNetworkError) as error:
            logger.warning("Chart not sent, text only: %s", error)
        else:
            if fits:
                return True
    sent = True
    for chunk in chunks:
        sent = await _send_text(bot, chat_id, chunk, parse_mode="HTML") and sent
    return sent


async def _send_text(bot: Bot, chat_id: int, text: str, *, parse_mode: str | None) -> bool:
    try:
        await bot.send_message(chat_id, text, parse_mode=parse_mode, disable_web_page_preview=True)
    except (TelegramAPIError, TelegramNetworkError) as error:
        logger.warning("Message to %s not sent: %s", chat_id, error)
        return False
    return True


def describe_user(telegram_id: int, username: str | None, first_name: str | None) -> str:
    if username:
        return f"@{display_name(username)}"
    return display_name(first_name or "") or str(telegram_id)


class Notifier:
    """Sends to ``ANALYTICS_CHANNEL_ID``; every method is a no-op without a channel."""

    def __init__(
        self,
        bot: Bot,
        channel_id: int | None,
        language: str,
        charts: ChartService | None = None,
    ) -> None:
        self.bot = bot
        self.channel_id = channel_id
        self.language = language
        self.charts = charts

    async def _send(self, text: str, *, parse_mode: str | None = None) -> bool:
        if self.channel_id is None:
            return False
        return await _send_text(self.bot, self.channel_id, text, parse_mode=parse_mode)

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
        """The digest text with the 14-day chart (text only when the chart is unavailable)."""
        if self.channel_id is None:
            return False
        chart = await self.charts.render(stats.period_end) if self.charts else None
        return await send_report(
            self.bot, self.channel_id, format_digest(stats, self.language), chart
        )
