"""Shared fixtures of the template tests: a per-session cache of rendered bots."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import Case, RenderCache


@pytest.fixture(scope="session")
def renders(tmp_path_factory: pytest.TempPathFactory) -> RenderCache:
    return RenderCache(tmp_path_factory)


@pytest.fixture(scope="session")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache per worker: aiogram and the shared package are analysed once."""
    return tmp_path_factory.mktemp("mypy-cache")


@pytest.fixture
def project(case: Case, renders: RenderCache) -> Path:
    """The bot rendered from the test's ``case`` (parametrized), once per session."""
    return renders.get(case)
