"""Shared fixtures of the template tests: a per-session cache of rendered bots."""

from __future__ import annotations

from pathlib import Path

import pytest
from _pytest.nodeid import NodeId

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


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Make ``--dist loadgroup`` group again: every test of one ``xdist_group`` on one worker.

    pytest-xdist (3.8) marks a test's group by appending ``@<group>`` to ``item._nodeid`` in
    the worker; pytest 9.2 keeps the node id in ``item._id`` instead, so the suffix is lost
    without a word and each test becomes a group of its own: module fixtures set up on both
    workers, one swarm shared by two (issue 27). Here, after xdist's hook, the suffix goes where
    this pytest keeps it; nothing changes where xdist already set it.
    tests/test_xdist_groups.py fails if the grouping is lost again.
    """
    if not getattr(config.option, "loadgroup", False):  # set in xdist workers only
        return
    for item in items:
        names = {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
        suffix = "@" + "_".join(sorted(names))
        if names and not item.nodeid.endswith(suffix):
            item._id = NodeId.parse(item.nodeid + suffix)
