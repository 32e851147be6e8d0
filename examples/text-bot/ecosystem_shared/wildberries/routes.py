"""Route maps of the CDN: which host serves which vol, validated, and the fallback tables."""

from __future__ import annotations

import bisect
import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import route_table
from .errors import MalformedError, require_int

# The route map of the CDN: `origin.mediabasket_route_map` (photos, card.json) and
# `origin.videonme_route_map` (videos), each a list of {method, hosts: [{vol_range_from,
# vol_range_to, host}]}; `recommend.*` may use other methods ("mod"), which carry no vol ranges.
# Sources: github.com/SergeiKamalian/wb-media-donwloader README.md and
# src/entities/product/basketRanges.ts (2026-08-17); github.com/rrrublev/wb-private-api
# tests/update-upstreams-routes.test.js ("exactly one range route", contiguous ranges; 2026).
ROUTE_MAP_URL = "https://cdn.wbbasket.ru/api/v3/upstreams"
MEDIA_ROUTE_MAP = "mediabasket_route_map"
VIDEO_ROUTE_MAP = "videonme_route_map"

_HOST = re.compile(r"[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?")
_NUMBERED_HOST = re.compile(r"(?P<prefix>[a-z0-9.-]*?[a-z-])(?P<number>[0-9]+)(?P<suffix>\..+)")


@dataclass(frozen=True, slots=True)
class Route:
    first_vol: int
    last_vol: int
    host: str


@dataclass(frozen=True, slots=True)
class RouteTable:
    """Contiguous vol ranges from 0, each served by one host."""

    routes: tuple[Route, ...]

    @classmethod
    def build(cls, rows: Sequence[tuple[int, int, str]], what: str) -> RouteTable:
        """A validated table; MalformedError names the first problem."""
        if not rows:
            raise MalformedError(f"{what}: no ranges")
        expected = 0
        routes = []
        for first, last, host in rows:
            if first != expected:
                gap = "a gap" if first > expected else "an overlap"
                raise MalformedError(f"{what}: {gap} before vol {first} (expected {expected})")
            if last < first:
                raise MalformedError(f"{what}: range {first}..{last} is empty")
            if not _HOST.fullmatch(host):
                raise MalformedError(f"{what}: {host!r} is not a host name")
            routes.append(Route(first, last, host))
            expected = last + 1
        return cls(tuple(routes))

    @property
    def last_vol(self) -> int:
        return self.routes[-1].last_vol

    def host_for(self, vol: int) -> str | None:
        if vol < 0:
            return None
        index = bisect.bisect_left(self.routes, vol, key=lambda route: route.last_vol)
        return self.routes[index].host if index < len(self.routes) else None

    def rows(self) -> list[tuple[int, int, str]]:
        return [(route.first_vol, route.last_vol, route.host) for route in self.routes]


@dataclass(frozen=True, slots=True)
class RouteMaps:
    """What a route map gave: the tables (None when unusable), hint hosts and the problems."""

    media: RouteTable | None
    video: RouteTable | None
    media_hints: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


def _hosts(entry: dict[str, Any], what: str) -> list[dict[str, Any]]:
    hosts = entry.get("hosts")
    if not isinstance(hosts, list) or not all(isinstance(host, dict) for host in hosts):
        raise MalformedError(f"{what}.hosts is not a list of objects")
    return hosts


def _host_names(entries: list[Any], what: str) -> list[str]:
    """Valid host names of routes (of any method), for probing only."""
    return [
        host["host"]
        for entry in entries
        if isinstance(entry, dict)
        for host in _hosts(entry, what)
        if isinstance(host.get("host"), str) and _HOST.fullmatch(host["host"])
    ]


def _route_table(section: object, name: str) -> tuple[RouteTable, list[str]]:
    """The one `range` route of a map, and the hosts of its other routes (hints only)."""
    what = f"origin.{name}"
    if not isinstance(section, list) or not all(isinstance(entry, dict) for entry in section):
        raise MalformedError(f"{what} is not a list of routes")
    ranges = [entry for entry in section if entry.get("method") == "range"]
    hints = _host_names([entry for entry in section if entry.get("method") != "range"], what)
    if len(ranges) != 1:
        raise MalformedError(f"{what} has {len(ranges)} routes of method 'range', expected one")
    rows = []
    for index, host in enumerate(_hosts(ranges[0], what)):
        item = f"{what}.hosts[{index}]"
        name_ = host.get("host")
        rows.append(
            (
                require_int(host.get("vol_range_from"), f"{item}.vol_range_from"),
                require_int(host.get("vol_range_to"), f"{item}.vol_range_to"),
                name_ if isinstance(name_, str) else repr(name_),
            )
        )
    return RouteTable.build(rows, what), hints


def parse_route_map(payload: object) -> RouteMaps:
    """Tables from the CDN's ``upstreams`` JSON; MalformedError if neither map is usable."""
    if not isinstance(payload, dict) or not isinstance(payload.get("origin"), dict):
        raise MalformedError("the route map has no 'origin' object")
    origin = payload["origin"]
    tables: dict[str, RouteTable | None] = {}
    hints: list[str] = []
    problems: list[str] = []
    for name in (MEDIA_ROUTE_MAP, VIDEO_ROUTE_MAP):
        found: list[str] = []
        try:
            tables[name], found = _route_table(origin.get(name), name)
        except MalformedError as error:
            tables[name] = None
            problems.append(str(error))
        if name == MEDIA_ROUTE_MAP:
            hints += found
    recommend = payload.get("recommend")
    if isinstance(recommend, dict) and isinstance(recommend.get(MEDIA_ROUTE_MAP), list):
        with contextlib.suppress(MalformedError):
            hints += _host_names(recommend[MEDIA_ROUTE_MAP], "recommend")
    media, video = tables[MEDIA_ROUTE_MAP], tables[VIDEO_ROUTE_MAP]
    if media is None and video is None:
        raise MalformedError("; ".join(problems))
    return RouteMaps(media, video, tuple(dict.fromkeys(hints)), tuple(problems))


FALLBACK_MEDIA = RouteTable.build(route_table.MEDIA_ROUTES, "route_table.MEDIA_ROUTES")
FALLBACK_VIDEO = RouteTable.build(route_table.VIDEO_ROUTES, "route_table.VIDEO_ROUTES")


def numbered_host(host: str, number: int) -> str | None:
    """``basket-26.wbbasket.ru`` with another basket number, or None if it has none."""
    match = _NUMBERED_HOST.fullmatch(host)
    if match is None or number < 1:
        return None
    width = len(match["number"])
    return f"{match['prefix']}{number:0{width}d}{match['suffix']}"


def host_number(host: str) -> int | None:
    match = _NUMBERED_HOST.fullmatch(host)
    return int(match["number"]) if match else None
