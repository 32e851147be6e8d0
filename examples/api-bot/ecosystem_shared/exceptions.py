"""Exceptions of the shared components; bots may catch :class:`EcosystemError` for all of them."""

from __future__ import annotations


class EcosystemError(Exception):
    """Base class of every error raised on purpose by ``ecosystem_shared``."""


class ConfigurationError(EcosystemError):
    """A setting is missing or has a value the component cannot work with."""


class DatabaseUnavailable(EcosystemError):
    """No database configured, not reachable yet, or the connection was lost.

    Raised by :meth:`ecosystem_shared.db.Database.acquire`; the bot keeps running and the
    database is retried in the background.
    """


class MigrationError(EcosystemError):
    """A migration file could not be read or applied."""
