"""A broadcast's message: HTML text, or a photo with an HTML caption, and an optional URL button,
checked before a job exists so that Telegram never refuses it a thousand times.

Limits (core.telegram.org/bots/api#sendmessage and #sendphoto, read 2026-12-05): text 1-4096
characters and caption 0-1024 characters *after entities parsing*, i.e. the visible text once
the HTML tags are gone; Telegram counts UTF-16 code units, as aiogram's entities do. HTML parse
mode (core.telegram.org/bots/api#html-style) supports only the tags below, properly nested,
and ``&lt; &gt; &amp; &quot;`` plus numeric entities.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urlsplit

from ecosystem_shared.exceptions import EcosystemError

__all__ = [
    "CAPTION_LIMIT",
    "TEXT_LIMIT",
    "BroadcastInputError",
    "BroadcastMessage",
    "photo_kind",
    "visible_length",
]

TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
BUTTON_TEXT_LIMIT = 64
PHOTO_LIMIT = 10 * 1024 * 1024  # sendPhoto: "The photo must be at most 10 MB in size."

TELEGRAM_TAGS = frozenset(
    {
        *("b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler"),
        *("a", "code", "pre", "blockquote", "tg-emoji"),
    }
)
ENTITY_NAMES = frozenset({"lt", "gt", "amp", "quot"})


class BroadcastInputError(EcosystemError):
    """The message or the audience cannot be sent; the text says why, for a person."""


class _TelegramHtml(HTMLParser):
    """Telegram's HTML parse mode: known tags only, properly nested; keeps the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in TELEGRAM_TAGS:
            raise BroadcastInputError(f"HTML: Telegram does not support the tag <{tag}>")
        if tag == "a" and not dict(attrs).get("href"):
            raise BroadcastInputError("HTML: <a> needs an href")
        self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        raise BroadcastInputError(f"HTML: Telegram does not support the self-closing tag <{tag}/>")

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            raise BroadcastInputError(f"HTML: </{tag}> does not close the last opened tag")
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if "<" in data or ">" in data:
            raise BroadcastInputError("HTML: write < and > as &lt; and &gt;")
        self.parts.append(data)

    def handle_entityref(self, name: str) -> None:
        if name not in ENTITY_NAMES:
            raise BroadcastInputError(f"HTML: unsupported entity &{name}; (use &lt; &gt; &amp;)")
        self.parts.append(html.unescape(f"&{name};"))

    def handle_charref(self, name: str) -> None:
        self.parts.append(html.unescape(f"&#{name};"))

    def handle_comment(self, data: str) -> None:
        raise BroadcastInputError("HTML: comments are not supported")

    def handle_decl(self, decl: str) -> None:
        raise BroadcastInputError("HTML: declarations are not supported")


def visible_text(markup: str) -> str:
    """The text Telegram shows for HTML ``markup``; :class:`BroadcastInputError` when Telegram
    would refuse it ("can't parse entities")."""
    parser = _TelegramHtml()
    parser.feed(markup)
    parser.close()
    if parser.rawdata:  # an unterminated tag or entity at the end
        raise BroadcastInputError(f"HTML: unfinished markup at the end: {parser.rawdata[:20]!r}")
    if parser.stack:
        raise BroadcastInputError(f"HTML: <{parser.stack[-1]}> is never closed")
    return "".join(parser.parts)


def visible_length(markup: str) -> int:
    """Length after entity parsing, in UTF-16 code units as Telegram counts."""
    return len(visible_text(markup).encode("utf-16-le")) // 2


def photo_kind(data: bytes) -> str | None:
    """``jpeg``/``png``/``webp``/``gif`` from the file's first bytes; None: not an image
    sendPhoto takes."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    return None


@dataclass(frozen=True, slots=True)
class BroadcastMessage:
    """What every recipient gets. ``photo`` (bytes) is uploaded once; then ``photo_file_id``."""

    text: str
    photo: bytes | None = None
    photo_file_id: str | None = None
    button_text: str | None = None
    button_url: str | None = None

    @property
    def has_photo(self) -> bool:
        return self.photo is not None or self.photo_file_id is not None

    def check(self) -> None:
        """Raise :class:`BroadcastInputError` with the first problem found."""
        if not self.has_photo and not self.text.strip():
            raise BroadcastInputError("The message is empty: give a text or a photo")
        length = visible_length(self.text)
        if self.has_photo and length > CAPTION_LIMIT:
            raise BroadcastInputError(
                f"The caption is {length} characters after HTML parsing; Telegram allows"
                f" {CAPTION_LIMIT} under a photo"
            )
        if not self.has_photo and length > TEXT_LIMIT:
            raise BroadcastInputError(
                f"The text is {length} characters after HTML parsing; Telegram allows {TEXT_LIMIT}"
            )
        if not self.has_photo and length == 0:
            raise BroadcastInputError("The message is empty once the HTML tags are removed")
        if self.photo is not None:
            if photo_kind(self.photo) is None:
                raise BroadcastInputError("The photo is not an image (JPEG, PNG, WebP or GIF)")
            if len(self.photo) > PHOTO_LIMIT:
                raise BroadcastInputError("The photo is over 10 MB, Telegram's limit for photos")
        self._check_button()

    def _check_button(self) -> None:
        if self.button_text is None and self.button_url is None:
            return
        if not (self.button_text or "").strip():
            raise BroadcastInputError("The button needs a text: --button TEXT=URL")
        if len(self.button_text or "") > BUTTON_TEXT_LIMIT:
            raise BroadcastInputError(f"The button text is over {BUTTON_TEXT_LIMIT} characters")
        url = urlsplit(self.button_url or "")
        if url.scheme not in ("http", "https", "tg") or not (url.netloc or url.scheme == "tg"):
            raise BroadcastInputError("The button needs an http(s):// or tg:// URL: TEXT=URL")
