"""An article's ``card.json``: its number, how many photos it has and whether it has a video."""

from __future__ import annotations

import json
from dataclasses import dataclass

from .errors import MalformedError, require_int

# Paths on a basket host (github.com/rrrublev/wb-private-api src/Constants.js, 2026-05-02; and
# the gist it cites, github.com/sheldhur gist 50420d0b): vol = nm // 100000, part = nm // 1000,
# /vol{vol}/part{part}/{nm}/info/ru/card.json and /vol{vol}/part{part}/{nm}/images/big/{n}.webp.
# card.json carries `nm_id`, `imt_name` and `media: {photo_count, has_video}` (wb-private-api
# src/WBProduct.js reads media.has_video, 2026-05-02).
CARD_PATH = "/vol{vol}/part{part}/{nm_id}/info/ru/card.json"
PHOTO_PATH = "/vol{vol}/part{part}/{nm_id}/images/big/{n}.webp"


@dataclass(frozen=True, slots=True)
class Card:
    nm_id: int
    photo_count: int
    has_video: bool


def parse_card(body: bytes) -> Card:
    """The fields of ``info/ru/card.json`` we use; MalformedError when they are not there."""
    try:
        data = json.loads(body)
    except ValueError as error:
        raise MalformedError(f"not JSON ({error})") from None
    if not isinstance(data, dict):
        raise MalformedError("not a JSON object")
    media = data.get("media")
    if not isinstance(media, dict):
        raise MalformedError("no 'media' object")
    nm_id = require_int(data.get("nm_id"), "nm_id")
    photo_count = require_int(media.get("photo_count"), "media.photo_count")
    has_video = media.get("has_video", False)
    if photo_count < 0 or not isinstance(has_video, bool):
        raise MalformedError(f"media is {media!r}")
    return Card(nm_id, photo_count, has_video)
