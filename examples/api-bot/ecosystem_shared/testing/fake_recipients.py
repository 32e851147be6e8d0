"""The recipients' side of the fake Bot API: users who blocked the bot or deleted their
account, chats that do not exist, flood control (429 with ``retry_after``), and a record of
every send so that tests can assert pace and exactly-once delivery.

Behaviour from public evidence (searched 2026-12-05):

- a user who blocked the bot: 403 ``{"ok": false, "error_code": 403, "description":
  "Forbidden: bot was blocked by the user"}`` to any method aimed at their chat (full envelope
  quoted in Achaak/toogoodtogo-bot#27, 2024-04-09, for sendMessage; TelegramBot/Api#382,
  2022-11-15; fuomag9/ChaturbateBot#34, 2018-10-04, for sendChatAction);
- a deleted account: 403 "Forbidden: user is deactivated" (envelope quoted in
  LibertyPaul/LostFilmUpdatesBot#57, 2017-09-23; the same four texts as constants in
  iamnnort/telegraf-helper src/config.ts);
- an unknown chat id: 400 "Bad Request: chat not found" (Automattic/wp-telegram-bot#26,
  2018-03-07; rareMaxim/CloudAPI#91, 2019-06-19);
- flood control: 429 "Too Many Requests: retry after N" with ``parameters.retry_after`` N, the
  seconds left before the request may be repeated (php-telegram-bot/core#728, 2017-12-23; the
  ResponseParameters object, core.telegram.org/bots/api#responseparameters, quoted in
  duhow/Telegram-PHP#12, 2017-10-16). Requests repeated before then get 429 again, with the
  time left (rubenlagus/TelegramBots#132, 2016-08-07: "you need to wait 234 seconds before the
  block goes away"). The Bots FAQ (core.telegram.org/bots/faq) gives about 30 messages per
  second per bot and about 1 per second per chat, not as hard thresholds: 429 may come at any
  time, which is what ``every``/``probability`` model.
"""

from __future__ import annotations

import bisect
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BLOCKED",
    "CHAT_NOT_FOUND",
    "DEACTIVATED",
    "SEND_METHODS",
    "FloodControl",
    "Recipients",
    "Send",
    "SendLog",
]

BLOCKED = "Forbidden: bot was blocked by the user"
DEACTIVATED = "Forbidden: user is deactivated"
CHAT_NOT_FOUND = "Bad Request: chat not found"

# Methods that put a message into a chat (lower case): what flood control limits and the send
# record keeps. Refusals of blocked/deactivated/unknown chats apply to any method with chat_id.
SEND_METHODS = frozenset(
    {
        *("sendmessage", "sendphoto", "sendvideo", "senddocument", "sendaudio", "sendvoice"),
        *("sendanimation", "sendmediagroup", "sendsticker", "sendvideonote", "sendlocation"),
        *("sendvenue", "sendcontact", "sendpoll", "senddice", "sendpaidmedia"),
        *("copymessage", "copymessages", "forwardmessage", "forwardmessages"),
    }
)

# Refusal: (error_code, description, retry_after or None).
Refusal = tuple[int, str, int | None]


def chat_key(chat_id: Any) -> int | str | None:
    """Chat ids arrive as ints or strings (forms): one key for both."""
    if isinstance(chat_id, int):
        return chat_id
    if isinstance(chat_id, str):
        try:
            return int(chat_id)
        except ValueError:
            return chat_id
    return None


@dataclass
class Recipients:
    """Per-chat states; a chat in none of the sets takes messages."""

    blocked: set[int | str] = field(default_factory=set)
    deactivated: set[int | str] = field(default_factory=set)
    missing: set[int | str] = field(default_factory=set)

    def refusal(self, chat_id: Any) -> Refusal | None:
        key = chat_key(chat_id)
        if key is None:
            return None
        if key in self.missing:
            return 400, CHAT_NOT_FOUND, None
        if key in self.deactivated:
            return 403, DEACTIVATED, None
        if key in self.blocked:
            return 403, BLOCKED, None
        return None


@dataclass
class FloodControl:
    """429s for :data:`SEND_METHODS` (or ``methods``), deterministic for a given call sequence.

    Triggers (any may be combined): every ``every``-th send; each send with ``probability``
    (``random.Random(seed)``); more than ``per_second`` sends in the last second (the bot) or
    more than ``per_chat_per_second`` to one chat. A trigger answers 429 with ``retry_after``;
    with ``hold`` (default) every further send within those seconds gets 429 too, with the time
    left, as Telegram does. ``triggers`` keeps when each hold began (monotonic) and its length.
    """

    every: int = 0
    probability: float = 0.0
    seed: int = 0
    retry_after: int = 1
    hold: bool = True
    per_second: float = 0.0
    per_chat_per_second: float = 0.0
    methods: frozenset[str] = SEND_METHODS
    clock: Callable[[], float] = time.monotonic
    triggers: list[tuple[float, int]] = field(default_factory=list)
    refused: int = 0  # 429s answered, triggers and holds
    _seen: int = 0
    _until: float = 0.0
    _random: random.Random = field(init=False)
    _recent: list[float] = field(default_factory=list)  # accepted sends in the last second
    _recent_by_chat: dict[int | str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.methods = frozenset(method.lower() for method in self.methods)
        self._random = random.Random(self.seed)  # test traffic, not crypto

    def refusal(self, method: str, chat_id: Any) -> Refusal | None:
        if method.lower() not in self.methods:
            return None
        now = self.clock()
        if self.hold and now < self._until:
            return self._refuse(math.ceil(self._until - now))
        self._seen += 1
        triggered = bool(self.every) and self._seen % self.every == 0
        triggered |= bool(self.probability) and self._random.random() < self.probability
        triggered |= self._over(self._recent, self.per_second, now)
        key = chat_key(chat_id)
        per_chat = self._recent_by_chat.setdefault(key, []) if key is not None else []
        triggered |= self._over(per_chat, self.per_chat_per_second, now)
        if triggered:
            self.triggers.append((now, self.retry_after))
            if self.hold:
                self._until = now + self.retry_after
            return self._refuse(self.retry_after)
        self._recent.append(now)
        per_chat.append(now)
        return None

    @staticmethod
    def _over(recent: list[float], limit: float, now: float) -> bool:
        """Whether one more send now would exceed ``limit`` per second (0: no limit)."""
        if not limit:
            return False
        del recent[: bisect.bisect_right(recent, now - 1.0)]
        return len(recent) + 1 > limit

    def _refuse(self, retry_after: int) -> Refusal:
        self.refused += 1
        retry_after = max(retry_after, 1)
        return 429, f"Too Many Requests: retry after {retry_after}", retry_after

    def in_hold(self, moment: float, grace: float = 0.0) -> bool:
        """Whether ``moment`` falls in a hold, later than ``grace`` after its start (requests
        already in flight when the 429 was answered arrive within the grace)."""
        return any(start + grace < moment < start + length for start, length in self.triggers)


@dataclass(frozen=True)
class Send:
    """One request of a send method, as Telegram saw it: arrival ``time`` (monotonic), the chat,
    and the answer (``error_code`` None: delivered)."""

    method: str
    chat_id: int | str | None
    time: float
    error_code: int | None = None
    description: str | None = None

    @property
    def delivered(self) -> bool:
        return self.error_code is None


class SendLog:
    """Every send request in the order answered (a slow one may arrive before a faster one
    answered earlier: the helpers go by ``time``), for pace and exactly-once checks."""

    def __init__(self) -> None:
        self.sends: list[Send] = []

    def add(self, send: Send) -> None:
        self.sends.append(send)

    def clear(self) -> None:
        self.sends.clear()

    def select(
        self, method: str | None = None, chat_id: Any = None, *, delivered: bool | None = None
    ) -> list[Send]:
        key = chat_key(chat_id)
        return [
            send
            for send in self.sends
            if (method is None or send.method.lower() == method.lower())
            and (key is None or send.chat_id == key)
            and (delivered is None or send.delivered == delivered)
        ]

    def deliveries(self, method: str | None = None) -> Counter[int | str | None]:
        """Chat -> messages delivered to it."""
        return Counter(send.chat_id for send in self.select(method, delivered=True))

    def duplicates(self, method: str | None = None) -> dict[int | str | None, int]:
        """Chats that got more than one message (of ``method``), with how many."""
        return {chat: n for chat, n in self.deliveries(method).items() if n > 1}

    def max_in_window(
        self, seconds: float = 1.0, method: str | None = None, *, delivered: bool | None = True
    ) -> int:
        """The most sends that arrived within any ``seconds`` long window (pace checks)."""
        times = sorted(send.time for send in self.select(method, delivered=delivered))
        best, start = 0, 0
        for end, moment in enumerate(times):
            while moment - times[start] >= seconds:
                start += 1
            best = max(best, end - start + 1)
        return best

    def rate(self, method: str | None = None, *, delivered: bool | None = True) -> float:
        """Sends per second between the first and the last (0 with fewer than two)."""
        times = [send.time for send in self.select(method, delivered=delivered)]
        if len(times) < 2 or max(times) == min(times):
            return 0.0
        return (len(times) - 1) / (max(times) - min(times))


def as_set(ids: Iterable[Any]) -> set[int | str]:
    return {key for key in map(chat_key, ids) if key is not None}
