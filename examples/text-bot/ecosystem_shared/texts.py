"""User-facing texts of the shared components, per language (the bot's own live in its package)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SharedTexts:
    error: str
    rate_limited: str
    new_user: str  # channel notification; {bot_name} {user} {telegram_id}
    digest_title: str
    digest_empty: str
    digest_line: str  # {bot_name} {new_users} {starts} {errors}
    digest_audience: str  # {reachable} {blocked}
    digest_total: str  # {new_users}
    chart_title: str  # {first} {last} {timezone}
    chart_new_users: str
    chart_active_users: str
    chart_main_events: str
    chart_empty: str


TEXTS: dict[str, SharedTexts] = {
    "ru": SharedTexts(
        error="😔 Что-то пошло не так. Мы уже разбираемся, попробуйте ещё раз чуть позже.",
        rate_limited="⏳ Слишком часто. Подождите {seconds} с и повторите.",
        new_user="🆕 Новый пользователь в {bot_name}: {user} (ID: {telegram_id})",
        digest_title="📊 Дайджест за сутки ({period})",
        digest_empty="Событий за сутки не было.",
        digest_line=("<b>{bot_name}</b>: новых {new_users}, /start {starts}, ошибок {errors}"),
        digest_audience="  👥 доступны {reachable}, заблокировали бота {blocked}",
        digest_total="Новых пользователей в экосистеме: {new_users}",
        chart_title="Боты за 14 дней: {first} – {last} ({timezone})",
        chart_new_users="Новые пользователи (впервые в экосистеме)",
        chart_active_users="Активные пользователи",
        chart_main_events="Основные события: фото и видео, команды, заказы",
        chart_empty="Нет данных за 14 дней",
    ),
    "en": SharedTexts(
        error="😔 Something went wrong. We are on it; please try again a bit later.",
        rate_limited="⏳ Too fast. Please wait {seconds} s and try again.",
        new_user="🆕 New user in {bot_name}: {user} (ID: {telegram_id})",
        digest_title="📊 Daily digest ({period})",
        digest_empty="No events in the last 24 hours.",
        digest_line="<b>{bot_name}</b>: new {new_users}, /start {starts}, errors {errors}",
        digest_audience="  👥 reachable {reachable}, blocked the bot {blocked}",
        digest_total="New users in the ecosystem: {new_users}",
        chart_title="Bots over 14 days: {first} – {last} ({timezone})",
        chart_new_users="New users (new to the ecosystem)",
        chart_active_users="Active users",
        chart_main_events="Main events: photos and videos, commands, orders",
        chart_empty="No data for 14 days",
    ),
}


def shared_texts(language: str) -> SharedTexts:
    return TEXTS.get(language, TEXTS["en"])
