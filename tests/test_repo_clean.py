"""The template repository's own code (tests, extensions, scripts, benchmarks) is as clean as
the bots it renders: ruff and mypy with pyproject.toml's settings."""

from __future__ import annotations

import pytest

from tests.helpers import PYTHON, REPO_ROOT, assert_ok, child_env, run


@pytest.mark.parametrize(
    "tool",
    [
        ["ruff", "check", "--no-cache", "--output-format", "concise", "."],
        ["ruff", "format", "--check", "--no-cache", "."],
        ["mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_repository_code_is_clean(tool: list[str]) -> None:
    result = run([PYTHON, "-m", *tool], REPO_ROOT, timeout=300, env=child_env())
    assert_ok(result, " ".join(tool))
