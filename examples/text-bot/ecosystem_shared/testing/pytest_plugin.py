"""pytest plugin of the test kit: real PostgreSQL, Redis and a fake Bot API for every bot's tests.

Enabled by ``tests/conftest.py`` (``pytest_plugins = [...]``); fixtures are re-exported here.
Loading it selects the Hypothesis profile (see hypothesis_profiles.py) before tests are collected,
and puts the dev extra's ffmpeg on PATH where the machine has none (binaries.py).
"""

import gc
import shutil

import pytest

from ecosystem_shared.testing import telegram_fixtures
from ecosystem_shared.testing.binaries import put_ffmpeg_on_path
from ecosystem_shared.testing.hypothesis_profiles import load_profile
from ecosystem_shared.testing.in_process import in_process_bot
from ecosystem_shared.testing.postgres import fixtures as postgres_fixtures
from ecosystem_shared.testing.postgres.fixtures import *  # noqa: F403 - its __all__: the fixtures
from ecosystem_shared.testing.servers import redis_server
from ecosystem_shared.testing.telegram_fixtures import bot_process_factory, fake_api

__all__ = [
    "bot_process_factory",
    "fake_api",
    "in_process_bot",
    "pytest_collection_finish",
    "pytest_configure",
    "redis_server",
]
__all__ += postgres_fixtures.__all__


def pytest_configure(config: pytest.Config) -> None:
    """Markers; ffmpeg from imageio-ffmpeg on PATH (before collection: tests look for it by
    name), removed from the disk at the end of the session."""
    telegram_fixtures.pytest_configure(config)
    try:
        added = put_ffmpeg_on_path()
    except RuntimeError as error:  # a TEST_SERVERS_FROM it does not know
        raise pytest.UsageError(str(error)) from None
    if added is not None:
        config.add_cleanup(lambda: shutil.rmtree(added, ignore_errors=True))


def pytest_collection_finish(session: pytest.Session) -> None:
    """What is imported by now (aiogram's hundreds of models above all) lives until the end:
    frozen, it is out of the collector's sight, and each full collection during the tests (and
    pytest's own at the end) no longer walks it. The bots' runtime does the same before polling."""
    gc.freeze()


load_profile()
