"""Texts of the admin's broadcast commands (/broadcast, /broadcasts), per language."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BroadcastTexts:
    ask: str
    aborted: str
    not_a_message: str
    refused: str  # {reason}
    preview: str  # {audience}
    confirm: str
    cancel: str
    pause: str
    resume: str
    not_a_draft: str  # {state}
    progress: str  # {id} {state} {sent} {total} {blocked} {failed} {unknown} {left} {eta}
    paused_because: str  # {reason}
    none_yet: str
    unavailable: str
    states: dict[str, str]


TEXTS: dict[str, BroadcastTexts] = {
    "ru": BroadcastTexts(
        ask="Пришлите сообщение для рассылки (текст или фото с подписью). /cancel — отмена.",
        aborted="Рассылка отменена.",
        not_a_message="Нужен текст или фото с подписью.",
        refused="Не отправить: {reason}",
        preview="☝️ Так увидят сообщение {audience} пользователей. Отправить?",
        confirm="✅ Отправить",
        cancel="✖️ Отменить",
        pause="⏸ Пауза",
        resume="▶️ Продолжить",
        not_a_draft="Эта рассылка уже {state}.",
        progress=(
            "📣 Рассылка #{id}: {state}\n"
            "Отправлено {sent} из {total}, заблокировали {blocked}, ошибок {failed},"
            " неизвестно {unknown}\nОсталось {left} (≈ {eta})"
        ),
        paused_because="Пауза: {reason}",
        none_yet="Рассылок ещё не было.",
        unavailable="База данных недоступна, попробуйте позже.",
        states={
            "draft": "черновик",
            "running": "идёт",
            "paused": "на паузе",
            "cancelled": "отменена",
            "done": "завершена",
        },
    ),
    "en": BroadcastTexts(
        ask="Send the message to broadcast (a text or a photo with a caption). /cancel to stop.",
        aborted="Broadcast cancelled.",
        not_a_message="A text or a photo with a caption, please.",
        refused="Cannot send this: {reason}",
        preview="☝️ This is what {audience} users will see. Send it?",
        confirm="✅ Send",
        cancel="✖️ Cancel",
        pause="⏸ Pause",
        resume="▶️ Resume",
        not_a_draft="This broadcast is already {state}.",
        progress=(
            "📣 Broadcast #{id}: {state}\n"
            "Sent {sent} of {total}, blocked {blocked}, failed {failed}, unknown {unknown}\n"
            "Left {left} (≈ {eta})"
        ),
        paused_because="Paused: {reason}",
        none_yet="No broadcasts yet.",
        unavailable="The database is unavailable; please try later.",
        states={
            "draft": "draft",
            "running": "running",
            "paused": "paused",
            "cancelled": "cancelled",
            "done": "done",
        },
    ),
}


def broadcast_texts(language: str) -> BroadcastTexts:
    return TEXTS.get(language, TEXTS["en"])
