"""CRM: /subscribe and /orders for users; /grant and /stats (the digest with its chart) for
ADMIN_USER_IDS only."""

import re
from decimal import Decimal

import asyncpg
from aiogram import Bot, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message, User

from ecosystem_shared.analytics import Analytics
from ecosystem_shared.digest_chart import ChartService
from ecosystem_shared.exceptions import DatabaseUnavailable
from ecosystem_shared.notifications import format_digest, send_report
from ecosystem_shared.sanitize import clean_id

from ..services.crm import CrmRepository
from ..settings import Settings
from ..texts import bot_texts

_USER_ID = re.compile(r"-?[0-9]{1,19}")


def router() -> Router:
    """A fresh router per call (one per dispatcher)."""
    routes = Router(name="crm")
    routes.message.register(subscribe, Command("subscribe"))
    routes.message.register(orders, Command("orders"))
    routes.message.register(grant, Command("grant"))
    routes.message.register(stats, Command("stats"))
    return routes


def customer(message: Message) -> User | None:
    """The sender, if it can be a customer. Channel posts have none; an id that no BIGINT column
    holds is not a Telegram user's: theirs have at most 52 significant bits (Bot API, "User":
    https://core.telegram.org/bots/api#user, read 2026-12-01)."""
    user = message.from_user
    return user if user is not None and clean_id(user.id) is not None else None


async def subscribe(
    message: Message, crm: CrmRepository, analytics: Analytics, settings: Settings
) -> None:
    texts = bot_texts(settings.LANGUAGE)
    user = customer(message)
    if user is None:
        return
    try:
        expires_at, order_id = await crm.subscribe(
            user, settings.SUBSCRIPTION_DAYS, Decimal(str(settings.SUBSCRIPTION_PRICE))
        )
    except DatabaseUnavailable:
        await message.answer(texts.unavailable)
        return
    await analytics.track_event(
        telegram_id=user.id,
        event_type="subscription_purchased",
        event_data={
            "plan": "premium",
            "duration_days": settings.SUBSCRIPTION_DAYS,
            "order_id": order_id,
        },
    )
    await message.answer(texts.subscribed.format(until=f"{expires_at:%Y-%m-%d}"))


async def orders(message: Message, crm: CrmRepository, settings: Settings) -> None:
    texts = bot_texts(settings.LANGUAGE)
    user = customer(message)
    if user is None:
        return
    try:
        found = await crm.orders(user.id)
    except DatabaseUnavailable:
        await message.answer(texts.unavailable)
        return
    if not found:
        await message.answer(texts.no_orders)
        return
    await message.answer(
        "\n".join(
            texts.order_line.format(
                id=order.id,
                product=order.product_name,
                amount=order.amount,
                status=order.status,
                date=f"{order.created_at:%Y-%m-%d}",
            )
            for order in found
        )
    )


def is_admin(message: Message, settings: Settings) -> bool:
    return message.from_user is not None and message.from_user.id in settings.ADMIN_USER_IDS


async def grant(
    message: Message, command: CommandObject, crm: CrmRepository, settings: Settings
) -> None:
    texts = bot_texts(settings.LANGUAGE)
    if not is_admin(message, settings):
        await message.answer(texts.admin_only)
        return
    args = (command.args or "").strip()
    telegram_id = clean_id(int(args)) if _USER_ID.fullmatch(args) else None
    if telegram_id is None:
        await message.answer(texts.grant_usage)
        return
    try:
        expires_at = await crm.grant(telegram_id, settings.SUBSCRIPTION_DAYS)
    except DatabaseUnavailable:
        await message.answer(texts.unavailable)
        return
    except asyncpg.ForeignKeyViolationError:
        await message.answer(texts.grant_usage)
        return
    await message.answer(texts.granted.format(telegram_id=args, until=f"{expires_at:%Y-%m-%d}"))


async def stats(
    message: Message, bot: Bot, analytics: Analytics, charts: ChartService, settings: Settings
) -> None:
    """The digest on demand: the ecosystem's 14-day chart with the last 24 hours' numbers."""
    if not is_admin(message, settings):
        await message.answer(bot_texts(settings.LANGUAGE).admin_only)
        return
    daily = await analytics.get_daily_stats()
    chart = await charts.render(daily.period_end)
    chunks = format_digest(daily, settings.LANGUAGE)
    await send_report(bot, message.chat.id, chunks, chart)
