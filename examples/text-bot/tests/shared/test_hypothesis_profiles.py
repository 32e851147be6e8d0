"""Hypothesis profiles of the test kit: reproducible in CI, many more examples on request."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ecosystem_shared.testing.hypothesis_profiles import EXAMPLES, PROFILES, profile_name


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "dev"),
        ({"CI": "true"}, "ci"),
        ({"CI": "1"}, "ci"),
        ({"CI": "false"}, "dev"),
        ({"CI": ""}, "dev"),
        ({"CI": "true", "HYPOTHESIS_PROFILE": "thorough"}, "thorough"),
        ({"HYPOTHESIS_PROFILE": " dev "}, "dev"),
    ],
)
def test_profile_follows_the_environment(environ: dict[str, str], expected: str) -> None:
    assert profile_name(environ) == expected


def test_unknown_profile_is_named_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"HYPOTHESIS_PROFILE='fast'.*ci, dev, thorough"):
        profile_name({"HYPOTHESIS_PROFILE": "fast"})


def test_the_profile_asked_for_is_loaded(pytestconfig: pytest.Config) -> None:
    if pytestconfig.getoption("hypothesis_profile", None):
        pytest.skip("--hypothesis-profile chose the profile")
    assert settings.get_current_profile_name() == profile_name()


def test_thorough_tries_many_more_examples() -> None:
    assert PROFILES["ci"].max_examples == PROFILES["dev"].max_examples == EXAMPLES
    assert PROFILES["thorough"].max_examples >= 10 * EXAMPLES


def drawn_by(profile: settings) -> list[int]:
    seen: list[int] = []

    @settings(profile, max_examples=20)
    @given(st.integers())
    def record(number: int) -> None:
        seen.append(number)

    record()
    return seen


def test_ci_draws_the_same_examples_on_every_run() -> None:
    assert drawn_by(PROFILES["ci"]) == drawn_by(PROFILES["ci"])
    assert PROFILES["ci"].database is None  # nothing carried over from an earlier run
