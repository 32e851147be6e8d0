"""Template-owned: wires the ecosystem test kit into this bot's tests."""

import pytest

pytest_plugins = ["ecosystem_shared.testing.pytest_plugin"]


@pytest.fixture
def bot_module() -> str:
    """Module started by ``python -m`` in process-level tests."""
    return "text_bot"
