"""Jinja helpers for copier.yml: derive slugs and package names, validate answers.

Loaded by ``copier_template_extensions.TemplateExtensionLoader`` (see ``_jinja_extensions``).
Kept dependency-free apart from jinja2 (and pytz when it is importable) so that a bare
``pip install copier copier-template-extensions`` is enough to render the template.
"""

from __future__ import annotations

import keyword
import re
import sys
import unicodedata
from datetime import datetime

from jinja2 import Environment
from jinja2.ext import Extension

# Russian (GOST-like, URL-friendly) plus Ukrainian/Belarusian letters.
_CYRILLIC = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh",
    "з": "z", "и": "i", "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o",
    "п": "p", "р": "r", "с": "s", "т": "t", "у": "u", "ф": "f", "х": "kh", "ц": "ts",
    "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "", "э": "e", "ю": "yu",
    "я": "ya", "і": "i", "ї": "yi", "є": "ye", "ґ": "g", "ў": "u",
}  # fmt: skip

# Modules a bot package must not shadow: the generated bot imports these.
_DEPENDENCY_MODULES = frozenset(
    {
        "aiogram", "aiohttp", "asyncpg", "apscheduler", "pydantic", "pydantic_settings",
        "pytz", "pytest", "pytest_asyncio", "ruff", "mypy", "yarl", "multidict",
        "ecosystem_shared", "tests", "test", "conftest", "setuptools", "pip", "hypothesis",
    }
)  # fmt: skip

SLUG_PATTERN = r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$"
PACKAGE_PATTERN = r"^[a-z][a-z0-9_]*$"
TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


def transliterate(text: str) -> str:
    """Latin-only approximation of ``text`` (Cyrillic by table, accents stripped)."""
    out = []
    for char in text:
        lower = char.lower()
        if lower in _CYRILLIC:
            latin = _CYRILLIC[lower]
            out.append(latin.capitalize() if char != lower else latin)
        else:
            out.append(char)
    decomposed = unicodedata.normalize("NFKD", "".join(out))
    return decomposed.encode("ascii", "ignore").decode("ascii")


def slugify(text: str) -> str:
    """``"Бот Картинок 2!"`` -> ``"bot-kartinok-2"``; never empty, never starts with a digit."""
    slug = re.sub(r"[^a-z0-9]+", "-", transliterate(text).lower()).strip("-")
    if not slug:
        return "my-bot"
    if slug[0].isdigit():
        slug = f"bot-{slug}"
    return slug


def package_from_slug(slug: str) -> str:
    """Python package name for a slug; avoids shadowing stdlib and dependency modules."""
    name = re.sub(r"[^a-z0-9_]+", "_", slug.lower()).strip("_") or "bot"
    if name[0].isdigit():
        name = f"bot_{name}"
    if is_reserved_module(name):
        name = f"{name}_bot"
    return name


def is_reserved_module(name: str) -> bool:
    return keyword.iskeyword(name) or name in sys.stdlib_module_names or name in _DEPENDENCY_MODULES


def package_name_error(name: str) -> str:
    """Empty string when ``name`` is a usable package name, otherwise why not."""
    if not re.match(PACKAGE_PATTERN, name or ""):
        return (
            "package_name must be a lowercase Python identifier: a letter, then letters, "
            f"digits or underscores (got {name!r})"
        )
    if is_reserved_module(name):
        return (
            f"package_name {name!r} would shadow the Python module of the same name "
            "(stdlib, a keyword or a dependency); pick another, e.g. "
            f"{name}_bot"
        )
    return ""


def timezone_error(name: str) -> str:
    """Empty string when ``name`` is an IANA time zone known to pytz/zoneinfo."""
    try:
        import pytz

        pytz.timezone(name)
        return ""
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 - pytz raises UnknownTimeZoneError and others
        return f"unknown time zone {name!r}: use an IANA name such as Europe/Moscow or UTC"
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(name)
        return ""
    except Exception:  # noqa: BLE001 - zoneinfo raises several error types
        return f"unknown time zone {name!r}: use an IANA name such as Europe/Moscow or UTC"


def time_error(value: str) -> str:
    if re.match(TIME_PATTERN, str(value)):
        return ""
    return f"digest_time must be HH:MM in 24-hour form, e.g. 00:00 or 09:30 (got {value!r})"


def float_error(value: object, low: float, high: float, name: str) -> str:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return f"{name} must be a number (got {value!r})"
    if not low < number <= high:
        return f"{name} must be greater than {low:g} and at most {high:g} (got {value!r})"
    return ""


def slug_list_error(value: str) -> str:
    items = [item.strip() for item in str(value).split(",") if item.strip()]
    if not items:
        return "bots must name at least one bot directory, e.g. picture-bot,crm-bot"
    bad = [item for item in items if not re.match(SLUG_PATTERN, item)]
    if bad:
        listed = ", ".join(bad)
        return f"bots must be comma-separated slugs (lowercase, digits, dashes); bad: {listed}"
    if len(set(items)) != len(items):
        return "bots must not repeat a name"
    return ""


def pystr(value: object) -> str:
    """A double-quoted Python string literal (non-ASCII kept readable)."""
    import json

    return json.dumps(str(value), ensure_ascii=False)


def split_list(value: str) -> list[str]:
    return [item.strip() for item in str(value).split(",") if item.strip()]


def main_events(mode: str, crm: bool, external_api: bool) -> list[str]:
    """The event types a generated bot's own handlers call its main activity: the default of its
    ANALYTICS_MAIN_EVENTS (settings.py and .env.example)."""
    events = {"media": ["photo_sent", "video_sent"], "text": ["command_used"]}.get(mode, [])
    extras = [("subscription_purchased", crm), ("api_request_success", external_api)]
    return events + [event for event, wanted in extras if wanted]


class BotTemplateExtension(Extension):
    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        environment.filters.update(
            transliterate=transliterate,
            slugify=slugify,
            package_from_slug=package_from_slug,
            split_list=split_list,
            pystr=pystr,
        )
        environment.globals.update(
            package_name_error=package_name_error,
            timezone_error=timezone_error,
            time_error=time_error,
            float_error=float_error,
            slug_list_error=slug_list_error,
            main_events=main_events,
            slug_pattern=SLUG_PATTERN,
            current_year=datetime.now().year,
        )
