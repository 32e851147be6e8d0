"""Logging setup: one stream handler whose formatter redacts secrets (also in tracebacks)."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable
from urllib.parse import urlsplit

# Anything shaped like a bot token, even one we were not told about (e.g. another bot's).
_TOKEN_RE = re.compile(r"\b\d{5,}:[A-Za-z0-9_-]{30,}\b")
# user:password@ in any URL.
_URL_PASSWORD_RE = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]+):[^@\s]+@", re.I)
REDACTED = "***"


def secrets_of(token: str | None, database_url: str | None) -> list[str]:
    """The literal strings to hide: the token and the database password."""
    found = [token] if token else []
    if database_url:
        password = urlsplit(database_url).password
        if password:
            found.append(password)
    return found


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    text = _TOKEN_RE.sub(REDACTED, text)
    return _URL_PASSWORD_RE.sub(rf"\g<scheme>:{REDACTED}@", text)


class RedactingFormatter(logging.Formatter):
    def __init__(self, fmt: str, secrets: Iterable[str] = ()) -> None:
        super().__init__(fmt)
        self.secrets = tuple(secrets)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)


def setup_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", secrets)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiogram logs every handled update at INFO (APScheduler every run): shown at DEBUG only.
    quiet = root.level if root.level <= logging.DEBUG else max(logging.WARNING, root.level)
    logging.getLogger("aiogram.event").setLevel(quiet)
    logging.getLogger("apscheduler").setLevel(quiet)
