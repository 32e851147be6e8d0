"""Skip updates of a type this aiogram does not know (a newer Bot API) before aiogram does.

aiogram's own skip warns with the whole update as JSON, which raises instead when the update
holds text that is not valid UTF-8 (a lone surrogate): the update would end as an error.
Telegram sends only the types in ``allowed_updates``, so this is about odd or hostile input.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram.dispatcher.event.bases import UNHANDLED
from aiogram.types import TelegramObject, Update
from aiogram.types.update import UpdateTypeLookupError

from ecosystem_shared.sanitize import clean_text

logger = logging.getLogger(__name__)


async def skip_unknown_updates(
    handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
    event: TelegramObject,
    data: dict[str, Any],
) -> Any:
    """Inner middleware on ``dp.update``: outer middlewares still see every update."""
    if isinstance(event, Update):
        try:
            event.event_type  # noqa: B018 - raises for an unknown type
        except UpdateTypeLookupError:
            fields = ", ".join(clean_text(name, 64) for name in list(event.model_extra or {})[:3])
            logger.warning("Update %s of an unknown type skipped (%s)", event.update_id, fields)
            return UNHANDLED
    return await handler(event, data)
