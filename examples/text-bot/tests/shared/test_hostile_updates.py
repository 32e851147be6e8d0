"""Hostile updates through the bot's real dispatcher, in-process, with a real database.

The dispatcher is the one production runs (``in_process_bot``: ``build_services`` +
``build_dispatcher`` with this bot's routers and settings class, started with the same startup
hooks and data as ``run_bot``), its Bot talks HTTP to a :class:`FakeBotAPI`; URLs of outside
services point at the fake. Hypothesis feeds it texts with NUL bytes, bidi overrides, lone
surrogates, SQL, HTML and 5000 characters; names and callback data of any length; messages
without a sender; update types aiogram does not know. Properties: no handler raises (an error the
shared error reporter would answer still fails the test), nothing raises out of the dispatcher,
and whatever users sent that reaches ``shared.analytics_events``/``shared.users`` is stored
within the caps of ``sanitize.py`` (and is not rejected by PostgreSQL: no analytics row is
dropped), whichever of the bot's handlers wrote it (analytics, the CRM service).

A probe middleware records the user-supplied strings of every update as an event, so the caps
are exercised whatever the bot's own handlers record.

Hypothesis runs with the profile of the test kit (``ci`` in CI: derandomized; ``thorough`` for many
more examples: ``HYPOTHESIS_PROFILE=thorough pytest tests/shared/test_hostile_updates.py``).
Inputs that once failed are pinned below as explicit examples.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from aiogram.types import TelegramObject, Update, User
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ecosystem_shared.analytics import Analytics
from ecosystem_shared.sanitize import (
    LANGUAGE_CODE_LIMIT,
    MAX_DEPTH,
    MAX_EVENT_DATA_BYTES,
    MAX_ITEMS,
    MAX_STRING,
    NAME_LIMIT,
)
from ecosystem_shared.testing.fake_bot_api import FakeBotAPI
from ecosystem_shared.testing.in_process import InProcessBot, StartInProcess

KEY_LIMIT = 256  # sanitize: dict keys inside event_data
PROBE_EVENT = "hostile_probe"

# ------------------------------------------------------------------ strategies

NASTY = [
    "\x00",
    "a\x00b\x00",
    "\u202e",  # RIGHT-TO-LEFT OVERRIDE
    "\u202dabc\u202c\u200f\u200e",
    "\ud800",  # a lone surrogate: valid in JSON ("\ud800"), not encodable as UTF-8
    "x\udfffy",
    "'; DROP TABLE shared.users; --",
    "' OR 1=1 --",
    "$1 $2 \\x00 %s %(name)s {0} {bot_name}",
    "<b>unclosed <i>tags</b> &amp; &lt;script&gt;",
    "\ufeff\u2028\u2029\r\n\t",
    "👨‍👩‍👧‍👦" * 3,
    " ",
    "",
]
nasty = st.sampled_from(NASTY)
# Long texts by repetition: 5000 random characters would exhaust Hypothesis' buffer.
long_text = st.builds(
    lambda piece, size: (piece * size)[:size],
    st.text(min_size=1, max_size=6) | nasty.filter(bool),
    st.integers(min_value=1000, max_value=5000),
)
text = st.lists(nasty | st.text(max_size=40) | long_text, min_size=1, max_size=3).map("".join)
command_text = st.builds(
    lambda command, tail: f"{command}{tail}",
    st.sampled_from(
        [
            "/start",
            "/start ",
            "/help",
            "/echo ",
            "/about",
            "/",
            "/subscribe ",
            "/orders",
            "/getdata",
        ]
    ),
    text,
)
message_text = text | command_text | st.sampled_from(["/start", "/help", "12345678", "0"])
user_id = st.integers(1, 10**6) | st.integers(2**31, 2**52) | st.just(2**63 + 7)
chat_id = st.integers(1, 10**13).map(lambda number: -number)
json_scalar = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    # Rounded: PostgreSQL prints 5e-324 with all its 324 digits, which no cap is about.
    | st.floats(-1e6, 1e6).map(lambda number: round(number, 3))
    | st.sampled_from([float("nan"), float("inf")])  # not JSON: must be stored as null
    | text
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(text, inner, max_size=5),
    max_leaves=25,
)
entities = st.lists(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(["bold", "bot_command", "url", "mention"]),
            "offset": st.integers(0, 6000),
            "length": st.integers(0, 6000),
        }
    ),
    max_size=3,
)


@st.composite
def user(draw: st.DrawFn) -> dict[str, Any]:
    found: dict[str, Any] = {"id": draw(user_id), "is_bot": False, "first_name": draw(text)}
    for key in ("last_name", "username", "language_code"):
        value = draw(st.none() | text)
        if value is not None:
            found[key] = value
    return found


@st.composite
def message(draw: st.DrawFn) -> dict[str, Any]:
    """A message in a private chat (from a user), a group (maybe without "from") or a channel."""
    kind = draw(st.sampled_from(["private", "private", "group", "supergroup", "channel"]))
    sender = draw(user())
    if kind == "private":
        chat: dict[str, Any] = {"id": sender["id"], "type": "private", "first_name": "x"}
    else:
        chat = {"id": draw(chat_id), "type": kind, "title": draw(text)}
    found: dict[str, Any] = {"message_id": draw(st.integers(1, 2**31)), "date": 1_700_000_000}
    found |= {"chat": chat, "text": draw(message_text)}
    if kind == "channel" or (kind != "private" and draw(st.booleans())):
        found["sender_chat"] = chat  # channel posts and anonymous admins: no "from"
    else:
        found["from"] = sender
    words = found["text"].split()
    if found["text"].startswith("/") and words:
        found["entities"] = [{"type": "bot_command", "offset": 0, "length": len(words[0])}]
    if draw(st.booleans()):
        found["entities"] = draw(entities)  # offsets past the end of the text, too
    return found


@st.composite
def update(draw: st.DrawFn) -> dict[str, Any]:
    """An update without its ``update_id`` (the test numbers them)."""
    kind = draw(
        st.sampled_from(
            ["message", "message", "edited_message", "channel_post", "callback_query", "unknown"]
        )
    )
    if kind in ("message", "edited_message"):
        body = draw(message())
        if kind == "edited_message":
            body["edit_date"] = 1_700_000_001
        return {kind: body}
    if kind == "channel_post":
        chat = {"id": draw(chat_id), "type": "channel", "title": draw(text)}
        post = {"message_id": 1, "date": 1_700_000_000, "chat": chat, "sender_chat": chat}
        return {kind: post | {"text": draw(text)}}
    if kind == "callback_query":
        sender = draw(user())
        query: dict[str, Any] = {"id": draw(text), "from": sender, "chat_instance": draw(text)}
        query["data"] = draw(text)
        if draw(st.booleans()):
            chat = {"id": sender["id"], "type": "private", "first_name": "x"}
            query["message"] = {"message_id": 1, "date": 1_700_000_000, "chat": chat, "text": "?"}
        else:
            query["inline_message_id"] = draw(text)
        return {kind: query}
    # An update type from a future Bot API version: any name, any payload.
    name = draw(st.text(st.characters(categories=["Ll"]), min_size=1, max_size=20))
    return {f"future_{name}": draw(json_value)}


# ------------------------------------------------------------------ the bot in-process


@dataclasses.dataclass(repr=False)  # short in Hypothesis reports
class Harness:
    bot: InProcessBot
    last_event_id: int = 0
    update_ids: itertools.count[int] = dataclasses.field(default_factory=itertools.count)

    @property
    def api(self) -> FakeBotAPI:
        return self.bot.api

    @property
    def analytics(self) -> Analytics:
        return self.bot.analytics

    async def feed(self, raw: dict[str, Any]) -> None:
        """One update, numbered here; fails the test if a handler raised (even one an errors
        handler then answered: hostile input must be handled, not crash a handler)."""
        await self.bot.feed({**raw, "update_id": next(self.update_ids)})
        if self.bot.errors:
            pytest.fail(f"a handler raised:\n{self.bot.raised()}", pytrace=False)


class Probe:
    """Outer update middleware: records the user-supplied strings of every update."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        analytics: Analytics = data["analytics"]
        sender: User | None = data.get("event_from_user")
        assert isinstance(event, Update)
        payload = event.model_dump(mode="python", exclude_none=True, exclude={"update_id"})
        await analytics.track_event(sender.id if sender else None, PROBE_EVENT, payload)
        return await handler(event, data)


@pytest_asyncio.fixture
async def harness(in_process_bot: StartInProcess) -> Harness:
    # The bot as run_bot runs it: its own services (media source, API clients) and startup hooks.
    bot = await in_process_bot()
    bot.dp.update.outer_middleware(Probe())
    return Harness(bot)


# ------------------------------------------------------------------ checks


def check_value(value: Any, depth: int = 0) -> None:
    """One stored event_data (decoded jsonb) within the caps of sanitize.py."""
    assert depth <= MAX_DEPTH + 1, "nested deeper than MAX_DEPTH"
    if isinstance(value, str):
        assert len(value) <= MAX_STRING, f"a string of {len(value)} characters"
        assert "\x00" not in value
        value.encode("utf-8")  # no lone surrogates
    elif isinstance(value, list):
        assert len(value) <= MAX_ITEMS
        for item in value:
            check_value(item, depth + 1)
    elif isinstance(value, dict):
        assert len(value) <= MAX_ITEMS
        for key, item in value.items():
            assert len(key) <= KEY_LIMIT and "\x00" not in key
            check_value(item, depth + 1)


async def check_stored(h: Harness) -> list[Any]:
    """Write everything buffered, then check the rows stored since the last check."""
    await h.analytics.flush()
    assert h.analytics.pending == 0
    assert h.analytics.dropped == 0, "the database rejected analytics rows"
    async with h.bot.services.db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id, event_type, bot_name, event_data, octet_length(event_data::text) AS size"
            " FROM shared.analytics_events WHERE id > $1 ORDER BY id",
            h.last_event_id,
        )
        users = await conn.fetch(
            "SELECT first_name, last_name, username, language_code FROM shared.users"
        )
    if rows:
        h.last_event_id = rows[-1]["id"]
    for row in rows:
        data = row["event_data"]
        check_value(data)
        compact = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        assert len(compact.encode("utf-8")) <= MAX_EVENT_DATA_BYTES
        # jsonb prints ", " and ": ": one byte more per separator than the compact form.
        slack = compact.count(",") + compact.count(":")
        assert row["size"] is None or row["size"] <= MAX_EVENT_DATA_BYTES + slack
        assert len(row["event_type"]) <= 128 and len(row["bot_name"]) <= NAME_LIMIT
    for found in users:
        for column in ("first_name", "last_name", "username"):
            assert found[column] is None or len(found[column]) <= NAME_LIMIT
        assert found["language_code"] is None or len(found["language_code"]) <= LANGUAGE_CODE_LIMIT
    return [row["event_data"] for row in rows if row["event_type"] == PROBE_EVENT]


def strings(value: Any) -> list[str]:
    """Every string (keys too) inside a decoded event_data."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [*value, *(found for item in value.values() for found in strings(item))]
    if isinstance(value, list):
        return [found for item in value for found in strings(item)]
    return []


def private_update(sender_id: int, extra: dict[str, Any]) -> dict[str, Any]:
    """An update (without its ``update_id``) from ``sender_id`` in its private chat, ``extra``'s
    fields merged in; a message is ``/start`` unless it has a text."""
    sender = {"id": sender_id, "is_bot": False, "first_name": "Test"}
    chat = {"id": sender_id, "type": "private", "first_name": "Test"}
    raw: dict[str, Any] = {}
    for kind, fields in extra.items():
        if kind == "message":
            body: dict[str, Any] = {"message_id": 1, "date": 1_700_000_000, "chat": chat}
            body["text"] = "/start"
            body |= {key: value for key, value in fields.items() if key != "from"}
            body["from"] = sender | fields.get("from", {})
            if body["text"].startswith("/"):
                length = len(body["text"].split()[0])
                body["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
            raw[kind] = body
        elif kind == "callback_query":
            raw[kind] = {"id": "1", "from": sender, "chat_instance": "ci"} | fields
        else:
            raw[kind] = fields
    return raw


# Found by this test on a CRM bot: /subscribe stored a 7,811-character first_name in
# shared.users (the CRM service wrote the row itself, past the sanitising of analytics). Pinned
# as is, and with NUL bytes and lone surrogates (invalid UTF-8) in every name.
LONG_NAME = "Ω" * 7811
HOSTILE_NAME = ("Ω\x00\ud800\u202e" * 1953)[:7811]
HOSTILE_SENDER = {"first_name": HOSTILE_NAME, "last_name": HOSTILE_NAME, "username": HOSTILE_NAME}
HOSTILE_SENDER |= {"language_code": HOSTILE_NAME}
PINNED_LONG_NAME = [
    private_update(4244, {"message": {"text": text, "from": {"first_name": LONG_NAME}}})
    for text in ("/subscribe", "/orders")  # no /start: analytics would overwrite the name
]
PINNED_HOSTILE_NAME = [
    private_update(4243, {"message": {"text": text, "from": HOSTILE_SENDER}})
    for text in ("/subscribe", "/orders", "/start", "12345678", "/echo x", "/getdata")
]
# A sender id no BIGINT column holds (Telegram's are at most 52 bits): handled, not raised.
PINNED_HUGE_ID = [private_update(2**63 + 7, {"message": {"text": "/subscribe"}})]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Detected unknown update type:RuntimeWarning")
# The example count and randomness come from the Hypothesis profile (ecosystem_shared.testing).
@settings(
    deadline=None,
    # One bot and one database for all examples, on purpose: state carries over as in production.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(update(), min_size=1, max_size=4))
@example(batch=PINNED_LONG_NAME)
@example(batch=PINNED_HOSTILE_NAME)
@example(batch=PINNED_HUGE_ID)
async def test_hostile_updates_never_escape_and_are_stored_within_caps(
    harness: Harness, batch: list[dict[str, Any]]
) -> None:
    for raw in batch:
        await harness.feed(raw)  # fails if a handler raised or anything escaped the dispatcher
    probes = await check_stored(harness)
    assert len(probes) == len(batch)  # every update went through the whole middleware chain


@pytest.mark.filterwarnings("ignore:Detected unknown update type:RuntimeWarning")
async def test_bot_still_serves_after_hostile_input(harness: Harness) -> None:
    """The extreme cases at once; then an ordinary /start is answered and recorded."""
    h = harness
    huge = "\x00\u202e' OR 1=1 --" * 400  # 5600 characters
    hostile: list[dict[str, Any]] = [
        {"message": {"text": f"/start {huge}", "from": {"first_name": huge, "username": huge}}},
        {"message": {"text": f"/echo {huge}"}},
        {"message": {"text": "\ud800" * 10}},
        {"callback_query": {"data": huge}},
        {"future_update_type": {"payload": [huge] * 300, "deep": [[[[[[[[[[huge]]]]]]]]]]}},
    ]
    for extra in hostile:
        await h.feed(private_update(4242, extra))
    probes = await check_stored(h)
    assert len(probes) == len(hostile)
    stored = [found for probe in probes for found in strings(probe)]
    assert max(map(len, stored)) == MAX_STRING  # long strings were cut, not dropped
    assert not any("\x00" in found for found in stored)
    assert any(isinstance(probe, dict) and probe.get("truncated") is True for probe in probes)

    h.api.clear_calls()
    await h.feed(private_update(5151, {"message": {}}))
    await h.api.wait_for_call("sendMessage", chat_id=5151)
    await check_stored(h)
    async with h.bot.services.db.acquire() as conn:
        starts = await conn.fetchval(
            "SELECT count(*) FROM shared.analytics_events"
            " WHERE telegram_id = 5151 AND event_type = 'user_start'"
        )
    assert starts == 1
