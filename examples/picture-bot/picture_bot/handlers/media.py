"""Media mode: an article number in, the product's photos and video out.

Sends are recorded (``photo_sent`` / ``video_sent``) only after Telegram accepted them, so the
statistics count what users actually received.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

import aiohttp
from aiogram import F, Router
from aiogram.exceptions import TelegramAPIError
from aiogram.types import FSInputFile, InputMediaPhoto, Message
from pydantic import BaseModel, Field, ValidationError

from ecosystem_shared.analytics import Analytics
from ecosystem_shared.telegram import local_file_reference
from ecosystem_shared.wildberries import (
    MAX_ARTICLE,
    MB,
    MediaBundle,
    MediaFile,
    MediaSource,
    MediaSourceError,
    chunked,
)

from ..services.media_source import sendable_limit, upload_limit, uses_local_api
from ..settings import Settings
from ..texts import BotTexts, bot_texts

logger = logging.getLogger(__name__)

_NUMBER = re.compile(r"[0-9]{1,18}")
# A pasted product link: https://www.wildberries.ru/catalog/12345678/detail.aspx
_LINK = re.compile(r"/catalog/([0-9]{1,18})(?:/|\?|$)")


class ArticleRequest(BaseModel):
    nm_id: int = Field(gt=0, le=MAX_ARTICLE)


def router() -> Router:
    """A fresh router per call (one per dispatcher)."""
    routes = Router(name="media")
    routes.message.register(article, F.chat.type == "private", F.text, ~F.text.startswith("/"))
    return routes


def parse_article(text: str) -> int | None:
    """The article number in a message (a number or a product link), or None if invalid."""
    text = text.strip()
    match = _NUMBER.fullmatch(text) or _LINK.search(text)
    if match is None:
        return None
    try:
        return ArticleRequest(nm_id=int(match.group(match.lastindex or 0))).nm_id
    except ValidationError:
        return None


def telegram_file(file: MediaFile, settings: Settings) -> FSInputFile | str:
    # aiogram uploads every InputFile as multipart; a Local Bot API server reads a file:// URI
    # from the directory it shares with us instead, beyond the multipart limit.
    if uses_local_api(settings) and file.size > upload_limit(settings):
        return local_file_reference(str(file.path))
    return FSInputFile(file.path)


async def article(
    message: Message,
    media_source: MediaSource,
    analytics: Analytics,
    settings: Settings,
) -> None:
    texts = bot_texts(settings.LANGUAGE)
    nm_id = parse_article(message.text or "")
    if nm_id is None:
        await message.answer(texts.bad_article)
        return
    user_id = message.from_user.id if message.from_user else message.chat.id
    await analytics.track_event(user_id, "article_request", {"nm_id": nm_id})
    try:
        bundle = await media_source.fetch(nm_id)
    except (MediaSourceError, aiohttp.ClientError, TimeoutError, OSError) as error:
        await analytics.track_error(user_id, f"media {nm_id}: {type(error).__name__}: {error}")
        await message.answer(texts.media_unavailable)
        return
    try:
        await deliver(message, bundle, nm_id, user_id, analytics, settings, texts)
    finally:
        await asyncio.to_thread(bundle.cleanup)


async def deliver(
    message: Message,
    bundle: MediaBundle,
    nm_id: int,
    user_id: int,
    analytics: Analytics,
    settings: Settings,
    texts: BotTexts,
) -> None:
    if bundle.failed or bundle.problems:
        problems = "; ".join([*bundle.problems, *bundle.failed])
        await analytics.track_error(user_id, f"media {nm_id}: {problems}")
    limit = sendable_limit(settings)
    # A custom source may not know our limits: refuse here what Telegram would refuse.
    photos = [photo for photo in bundle.photos if photo.size <= limit]
    too_large = len(bundle.too_large) + len(bundle.photos) - len(photos)
    video = bundle.video if bundle.video and bundle.video.size <= limit else None
    if bundle.video is not None and video is None:
        too_large += 1
    limit_mb = f"{round(limit / MB, 2):g}"
    too_large_text = texts.media_too_large.format(count=too_large, limit=limit_mb)

    if not photos and video is None:
        if too_large:
            await message.answer(too_large_text)
        elif bundle.failed:
            await message.answer(texts.media_unavailable)
        else:
            await message.answer(texts.media_not_found.format(nm_id=nm_id))
        return

    caption = texts.media_caption.format(nm_id=nm_id)
    delivered = True
    sent = 0
    try:
        for chunk in chunked(photos):
            first = sent == 0
            if len(chunk) == 1:  # an album needs two or more
                await message.answer_photo(
                    telegram_file(chunk[0], settings), caption=caption if first else None
                )
            else:
                await message.answer_media_group(
                    [
                        InputMediaPhoto(
                            media=telegram_file(photo, settings),
                            caption=caption if first and index == 0 else None,
                        )
                        for index, photo in enumerate(chunk)
                    ]
                )
            sent += len(chunk)
    except TelegramAPIError as error:
        delivered = False
        await analytics.track_error(user_id, f"photos of {nm_id}: {type(error).__name__}: {error}")
    if sent:
        await analytics.track_photos_sent(user_id, sent, event_data={"nm_id": nm_id})

    if video is not None and delivered:
        try:
            await message.answer_video(
                telegram_file(video, settings),
                caption=None if sent else caption,
                supports_streaming=True,
            )
        except TelegramAPIError as error:
            delivered = False
            await analytics.track_error(
                user_id, f"video of {nm_id}: {type(error).__name__}: {error}"
            )
        else:
            await analytics.track_video_sent(user_id, event_data={"nm_id": nm_id})

    # The user may have blocked the bot meanwhile: these notes are best effort.
    with contextlib.suppress(TelegramAPIError):
        if too_large:
            await message.answer(too_large_text)
        if not delivered:
            await message.answer(texts.media_send_failed)
