"""Texts this bot shows to users. The default language comes from the LANGUAGE setting."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BotTexts:
    greeting: str  # {name}
    help: str
    unknown: str
    subscribed: str  # {until}
    no_orders: str
    order_line: str  # {id} {product} {amount} {status} {date}
    admin_only: str
    unavailable: str
    granted: str  # {telegram_id} {until}
    grant_usage: str


TEXTS: dict[str, BotTexts] = {
    "ru": BotTexts(
        greeting="Привет, {name}! Я CRM Bot. Команды: /help",
        help="\n".join(
            [
                "Команды:",
                "/start — начать",
                "/help — помощь",
                "/echo <текст> — повторить",
                "/about — о боте",
                "/subscribe — оформить подписку",
                "/orders — мои заказы",
            ]
        ),
        unknown="Не понял. Команды: /help",
        subscribed="Подписка активирована до {until}.",
        no_orders="Заказов пока нет.",
        order_line="#{id} {product} — {amount} ({status}, {date})",
        admin_only="Эта команда только для администраторов.",
        unavailable="Сервис временно недоступен, попробуйте позже.",
        granted="Пользователю {telegram_id} выдана подписка до {until}.",
        grant_usage="Использование: /grant <telegram_id>",
    ),
    "en": BotTexts(
        greeting="Hi, {name}! I am CRM Bot. Commands: /help",
        help="\n".join(
            [
                "Commands:",
                "/start - start",
                "/help - help",
                "/echo <text> - repeat",
                "/about - about the bot",
                "/subscribe - buy a subscription",
                "/orders - my orders",
            ]
        ),
        unknown="I did not get that. Commands: /help",
        subscribed="Subscription active until {until}.",
        no_orders="No orders yet.",
        order_line="#{id} {product} - {amount} ({status}, {date})",
        admin_only="This command is for administrators only.",
        unavailable="The service is temporarily unavailable, please try later.",
        granted="User {telegram_id} got a subscription until {until}.",
        grant_usage="Usage: /grant <telegram_id>",
    ),
}


def bot_texts(language: str) -> BotTexts:
    return TEXTS.get(language, TEXTS["en"])
