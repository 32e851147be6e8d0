"""Texts this bot shows to users. The default language comes from the LANGUAGE setting."""

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BotTexts:
    greeting: str  # {name}
    help: str
    unknown: str
    bad_article: str
    media_caption: str  # {nm_id}
    media_not_found: str  # {nm_id}
    media_unavailable: str
    media_too_large: str  # {count} {limit}
    media_send_failed: str


TEXTS: dict[str, BotTexts] = {
    "ru": BotTexts(
        greeting="Привет, {name}! Я Picture Bot. Команды: /help",
        help="\n".join(
            [
                "Команды:",
                "/start — начать",
                "/help — помощь",
                "Пришлите артикул Wildberries (число) — пришлю фото и видео товара.",
            ]
        ),
        unknown="Не понял. Команды: /help",
        bad_article=(
            "Артикул — это число от 1 до 9999999999, например 12345678"
            " (можно прислать и ссылку на товар)."
        ),
        media_caption="Артикул {nm_id}",
        media_not_found="По артикулу {nm_id} ни фото, ни видео не нашлось.",
        media_unavailable="Не удалось получить фото или видео товара, попробуйте позже.",
        media_too_large="Файлов больше {limit} МБ: {count} — Telegram не принимает такие от ботов.",
        media_send_failed="Telegram не принял файлы, попробуйте позже.",
    ),
    "en": BotTexts(
        greeting="Hi, {name}! I am Picture Bot. Commands: /help",
        help="\n".join(
            [
                "Commands:",
                "/start - start",
                "/help - help",
                "Send a Wildberries article number to get its photos and video.",
            ]
        ),
        unknown="I did not get that. Commands: /help",
        bad_article=(
            "An article number is a number from 1 to 9999999999, e.g. 12345678"
            " (a product link works too)."
        ),
        media_caption="Article {nm_id}",
        media_not_found="No photos or video found for article {nm_id}.",
        media_unavailable="Could not get the product's photos or video, please try later.",
        media_too_large="Files over {limit} MB: {count}; Telegram does not accept those from bots.",
        media_send_failed="Telegram did not accept the files, please try later.",
    ),
}


def bot_texts(language: str) -> BotTexts:
    return TEXTS.get(language, TEXTS["en"])
