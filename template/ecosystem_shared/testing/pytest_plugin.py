"""pytest plugin of the test kit: real PostgreSQL and a fake Bot API for every bot's tests.

Enabled by ``tests/conftest.py`` (``pytest_plugins = [...]``); fixtures are re-exported here.
"""

from ecosystem_shared.testing.postgres import (
    database_url,
    db,
    db_conn,
    empty_database_url,
    migrated_template,
    own_server,
    postgres_url,
)
from ecosystem_shared.testing.telegram_fixtures import (
    bot_process_factory,
    fake_api,
    pytest_configure,
)

__all__ = [
    "bot_process_factory",
    "database_url",
    "db",
    "db_conn",
    "empty_database_url",
    "fake_api",
    "migrated_template",
    "own_server",
    "postgres_url",
    "pytest_configure",
]
