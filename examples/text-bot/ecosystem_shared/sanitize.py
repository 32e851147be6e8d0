"""Make user-supplied values storable: PostgreSQL rejects NUL bytes and invalid UTF-8 in text and
jsonb, and one huge value must not bloat a batch.

The one path into the shared tables: events are cleaned by analytics before buffering, rows of
``shared.users`` when an ``analytics_store.UserRow`` is built (analytics and bots' own services,
e.g. the CRM, write users only through ``analytics_store.upsert_users``)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Any

MAX_STRING = 1024  # characters per string inside event_data
MAX_EVENT_DATA_BYTES = 8 * 1024  # whole event_data as JSON
MAX_ITEMS = 100  # keys of a dict / items of a list
MAX_DEPTH = 8
PREVIEW_CHARS = 1024  # kept from an event_data that was too large
BIGINT = 2**63
NAME_LIMIT = 256  # characters of a username, first or last name, and of a bot name
LANGUAGE_CODE_LIMIT = 16
# Telegram's own limit for a first or last name (a username is 5-32 characters):
# https://limits.tginfo.me/en, read 2026-12-01.
DISPLAY_NAME_LIMIT = 64


def clean_text(value: object, limit: int = MAX_STRING) -> str:
    """``value`` as text without NUL bytes or lone surrogates, at most ``limit`` characters."""
    text = value if isinstance(value, str) else str(value)
    if "\x00" in text:
        text = text.replace("\x00", "")
    text = text[:limit]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def display_name(value: object) -> str:
    """A name users sent, fit to be put into a message the bot sends (which must be valid UTF-8:
    a lone surrogate makes the request fail before it leaves) and no longer than Telegram's."""
    return clean_text(value, DISPLAY_NAME_LIMIT)


def optional_text(value: object, limit: int) -> str | None:
    return None if value is None else clean_text(value, limit)


def clean_id(value: object) -> int | None:
    """A Telegram id fit for BIGINT, or None for anything else (None, bool, out of range)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if -BIGINT <= value < BIGINT else None


def _clean(value: Any, depth: int) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None  # JSON has no NaN/Infinity
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if depth >= MAX_DEPTH:
        return clean_text(value)
    if isinstance(value, Mapping):
        items = list(value.items())[:MAX_ITEMS]
        return {clean_text(k, 256): _clean(v, depth + 1) for k, v in items}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v, depth + 1) for v in list(value)[:MAX_ITEMS]]
    return clean_text(value)


def clean_event_data(value: Any) -> Any:
    """JSON-ready copy of ``value`` within the limits above; None stays None (SQL NULL)."""
    if value is None:
        return None
    cleaned = _clean(value, 0)
    text = json.dumps(cleaned, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode("utf-8")) <= MAX_EVENT_DATA_BYTES:
        return cleaned
    return {"truncated": True, "size": len(text), "preview": text[:PREVIEW_CHARS]}
