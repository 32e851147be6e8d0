"""Checks Telegram makes on what a bot sends: HTML parse mode, caption length, PNG dimensions."""

from __future__ import annotations

from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any

from ecosystem_shared.testing.fake_bot_api.fields import HTML_TAGS, MAX_CAPTION, ApiError


class _HtmlChecker(HTMLParser):
    """Telegram's HTML parse mode: known tags only, properly nested; collects the visible text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in HTML_TAGS:
            raise _parse_error(f'Unsupported start tag "{tag}"')
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            raise _parse_error(f'Unmatched end tag "{tag}"')
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse_error(detail: str) -> ApiError:
    return ApiError(400, f"Bad Request: can't parse entities: {detail}")


def visible_text(text: str, parse_mode: Any) -> str:
    """The text Telegram shows; HTML is checked the way Telegram does (raises ApiError)."""
    if str(parse_mode).upper() != "HTML":
        return text
    checker = _HtmlChecker()
    checker.feed(text)
    checker.close()
    if checker.stack:
        raise _parse_error(f'Can\'t find end tag corresponding to start tag "{checker.stack[-1]}"')
    return "".join(checker.text)


def caption(params: Mapping[str, Any]) -> str | None:
    """The visible caption of a send (or album item); too long gets Telegram's 400."""
    if params.get("caption") is None:
        return None
    text = visible_text(str(params["caption"]), params.get("parse_mode"))
    if len(text) > MAX_CAPTION:
        raise ApiError(400, "Bad Request: message caption is too long")
    return text


def check_png_dimensions(data: bytes) -> None:
    """sendPhoto: "The photo's width and height must not exceed 10000 in total. Width and
    height ratio must be at most 20" (core.telegram.org/bots/api#sendphoto, quoted in
    y-young/nazurin#10, 2021-02-14); refused with PHOTO_INVALID_DIMENSIONS (nickoala/telepot#135,
    2016-08-25). Checked for PNG uploads, whose size is in the IHDR chunk; others pass."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n") or data[12:16] != b"IHDR":
        return
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if (
        not width
        or not height
        or width + height > 10000
        or max(width, height) > 20 * min(width, height)
    ):
        raise ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
