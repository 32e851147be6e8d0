"""pytest plugin of the test kit: real PostgreSQL, Redis and a fake Bot API for every bot's tests.

Enabled by ``tests/conftest.py`` (``pytest_plugins = [...]``); fixtures are re-exported here.
Loading it selects the Hypothesis profile (see hypothesis_profiles.py) before tests are collected.
"""

import gc

import pytest

from ecosystem_shared.testing.hypothesis_profiles import load_profile
from ecosystem_shared.testing.in_process import in_process_bot
from ecosystem_shared.testing.postgres import (
    database_copies,
    database_url,
    db,
    db_conn,
    empty_database_url,
    empty_databases,
    migrated_template,
    own_server,
    postgres_url,
)
from ecosystem_shared.testing.servers import redis_server
from ecosystem_shared.testing.telegram_fixtures import (
    bot_process_factory,
    fake_api,
    pytest_configure,
)

__all__ = [
    "bot_process_factory",
    "database_copies",
    "database_url",
    "db",
    "db_conn",
    "empty_database_url",
    "empty_databases",
    "fake_api",
    "in_process_bot",
    "migrated_template",
    "own_server",
    "postgres_url",
    "pytest_collection_finish",
    "pytest_configure",
    "redis_server",
]


def pytest_collection_finish(session: pytest.Session) -> None:
    """What is imported by now (aiogram's hundreds of models above all) lives until the end:
    frozen, it is out of the collector's sight, and each full collection during the tests (and
    pytest's own at the end) no longer walks it. The bots' runtime does the same before polling."""
    gc.freeze()


load_profile()
