"""/getdata: ask the external API, record success or the error."""

import json

import aiohttp
from aiogram import Router
from aiogram.filters import Command
from aiogram.types import Message

from ecosystem_shared.analytics import Analytics

from ..services.external_api import ExternalApiClient, ServerError
from ..settings import Settings
from ..texts import bot_texts


def router() -> Router:
    """A fresh router per call (one per dispatcher). The client comes from ``bot_services``."""
    routes = Router(name="external")
    routes.message.register(get_data, Command("getdata"))
    return routes


async def get_data(
    message: Message, external_api: ExternalApiClient, analytics: Analytics, settings: Settings
) -> None:
    texts = bot_texts(settings.LANGUAGE)
    user_id = message.from_user.id if message.from_user else message.chat.id
    try:
        data = await external_api.fetch_data(user_id)
    except (aiohttp.ClientError, TimeoutError, ServerError, ValueError) as error:
        await analytics.track_error(user_id, f"external API: {type(error).__name__}: {error}")
        await message.answer(texts.data_failed)
        return
    await analytics.track_event(
        telegram_id=user_id, event_type="api_request_success", event_data={"endpoint": "/data"}
    )
    await message.answer(texts.data.format(data=json.dumps(data, ensure_ascii=False)[:3500]))
