"""CRM: /subscribe and /orders for users; /grant and /stats for ADMIN_USER_IDS only."""

from decimal import Decimal

import asyncpg
from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from ecosystem_shared.analytics import Analytics
from ecosystem_shared.db import Database
from ecosystem_shared.exceptions import DatabaseUnavailable
from ecosystem_shared.notifications import format_digest

from ..services.crm import CrmRepository
from ..settings import Settings
from ..texts import bot_texts

router = Router(name="crm")


@router.message(Command("subscribe"))
async def subscribe(
    message: Message, db: Database, analytics: Analytics, settings: Settings
) -> None:
    texts = bot_texts(settings.LANGUAGE)
    user = message.from_user
    if user is None:
        return
    try:
        expires_at, order_id = await CrmRepository(db).subscribe(
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


@router.message(Command("orders"))
async def orders(message: Message, db: Database, settings: Settings) -> None:
    texts = bot_texts(settings.LANGUAGE)
    if message.from_user is None:
        return
    try:
        found = await CrmRepository(db).orders(message.from_user.id)
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


@router.message(Command("grant"))
async def grant(message: Message, command: CommandObject, db: Database, settings: Settings) -> None:
    texts = bot_texts(settings.LANGUAGE)
    if not is_admin(message, settings):
        await message.answer(texts.admin_only)
        return
    args = (command.args or "").strip()
    if not args.lstrip("-").isdigit():
        await message.answer(texts.grant_usage)
        return
    try:
        expires_at = await CrmRepository(db).grant(int(args), settings.SUBSCRIPTION_DAYS)
    except DatabaseUnavailable:
        await message.answer(texts.unavailable)
        return
    except asyncpg.ForeignKeyViolationError:
        await message.answer(texts.grant_usage)
        return
    await message.answer(texts.granted.format(telegram_id=args, until=f"{expires_at:%Y-%m-%d}"))


@router.message(Command("stats"))
async def stats(message: Message, analytics: Analytics, settings: Settings) -> None:
    if not is_admin(message, settings):
        await message.answer(bot_texts(settings.LANGUAGE).admin_only)
        return
    daily = await analytics.get_daily_stats()
    for chunk in format_digest(daily, settings.LANGUAGE):
        await message.answer(chunk, parse_mode="HTML")
