"""Texts this bot shows to users. The default language comes from the LANGUAGE setting."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BotTexts:
    greeting: str  # {name}
    help: str
    unknown: str
    data: str  # {data}
    data_failed: str


TEXTS: dict[str, BotTexts] = {
    "ru": BotTexts(
        greeting="Привет, {name}! Я API Bot. Команды: /help",
        help="\n".join(
            [
                "Команды:",
                "/start — начать",
                "/help — помощь",
                "/echo <текст> — повторить",
                "/about — о боте",
                "/getdata — данные из внешнего API",
            ]
        ),
        unknown="Не понял. Команды: /help",
        data="Данные: {data}",
        data_failed="Не удалось получить данные, попробуйте позже.",
    ),
    "en": BotTexts(
        greeting="Hi, {name}! I am API Bot. Commands: /help",
        help="\n".join(
            [
                "Commands:",
                "/start - start",
                "/help - help",
                "/echo <text> - repeat",
                "/about - about the bot",
                "/getdata - data from the external API",
            ]
        ),
        unknown="I did not get that. Commands: /help",
        data="Data: {data}",
        data_failed="Could not get the data, please try later.",
    ),
}


def bot_texts(language: str) -> BotTexts:
    return TEXTS.get(language, TEXTS["en"])
