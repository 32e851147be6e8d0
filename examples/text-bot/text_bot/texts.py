"""Texts this bot shows to users. The default language comes from the LANGUAGE setting."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BotTexts:
    greeting: str  # {name}
    help: str
    unknown: str


TEXTS: dict[str, BotTexts] = {
    "ru": BotTexts(
        greeting="Привет, {name}! Я Text Bot. Команды: /help",
        help="\n".join(
            [
                "Команды:",
                "/start — начать",
                "/help — помощь",
                "/echo <текст> — повторить",
                "/about — о боте",
            ]
        ),
        unknown="Не понял. Команды: /help",
    ),
    "en": BotTexts(
        greeting="Hi, {name}! I am Text Bot. Commands: /help",
        help="\n".join(
            [
                "Commands:",
                "/start - start",
                "/help - help",
                "/echo <text> - repeat",
                "/about - about the bot",
            ]
        ),
        unknown="I did not get that. Commands: /help",
    ),
}


def bot_texts(language: str) -> BotTexts:
    return TEXTS.get(language, TEXTS["en"])
