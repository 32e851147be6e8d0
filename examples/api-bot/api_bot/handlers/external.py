"""/getdata: ask the external API, record success or the error."""

import json

import aiohttp
from aiogram import Dispatcher, Router
from aiogram.filters import Command
from aiogram.types import Message

from ecosystem_shared.analytics import Analytics

from ..services.external_api import ExternalApiClient, ServerError
from ..settings import Settings
from ..texts import bot_texts


def router() -> Router:
    """A fresh router per call (one per dispatcher)."""
    routes = Router(name="external")
    routes.startup.register(open_client)
    routes.shutdown.register(close_client)
    routes.message.register(get_data, Command("getdata"))
    return routes


async def open_client(dispatcher: Dispatcher, settings: Settings) -> None:
    key = settings.EXTERNAL_API_KEY.get_secret_value() if settings.EXTERNAL_API_KEY else None
    dispatcher["external_api"] = ExternalApiClient(
        settings.EXTERNAL_API_BASE_URL, key, settings.API_REQUEST_TIMEOUT
    )


async def close_client(dispatcher: Dispatcher) -> None:
    # Looked up on the dispatcher: shutdown hooks get the workflow data as it was before startup.
    client = dispatcher.workflow_data.get("external_api")
    if isinstance(client, ExternalApiClient):
        await client.close()


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
