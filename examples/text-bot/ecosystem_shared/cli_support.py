"""What the operator commands (``python -m ecosystem_shared.digest --preview``,
``python -m ecosystem_shared.stats rebuild``) share: the database and the digest's zone from the
bot's environment (or options), checked with a clear message instead of a traceback."""

from __future__ import annotations

import argparse
import os
from datetime import date

import pytz


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="default: $DATABASE_URL",
    )
    parser.add_argument(
        "--timezone",
        default=os.environ.get("DIGEST_TIMEZONE") or "Europe/Moscow",
        help="the digest's time zone; default: $DIGEST_TIMEZONE or Europe/Moscow",
    )


def checked_common(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[str, str]:
    """The DSN and zone of ``args``; exits through ``parser.error`` (status 2) when unusable."""
    if not args.database_url:
        parser.error("no database: set DATABASE_URL or pass --database-url")
    if not str(args.database_url).startswith(("postgresql://", "postgres://")):
        parser.error("--database-url: expected postgresql://user:password@host:5432/database")
    try:
        pytz.timezone(args.timezone)
    except pytz.UnknownTimeZoneError:
        parser.error(f"--timezone: not an IANA time zone: {args.timezone!r}")
    return str(args.database_url), str(args.timezone)


def iso_day(value: str) -> date:
    """argparse type for YYYY-MM-DD."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a day as YYYY-MM-DD, not {value!r}") from None
