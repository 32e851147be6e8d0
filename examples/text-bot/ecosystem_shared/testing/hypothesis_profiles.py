"""Hypothesis profiles of the test kit, loaded by its pytest plugin before tests are collected.

- ``ci``: derandomized, so every CI run tries the same examples and a red build is reproducible;
  no example database. Loaded when the ``CI`` variable is set (GitHub Actions, GitLab CI and most
  others set ``CI=true``).
- ``dev``: the default elsewhere: new random examples on every run; failures are saved in
  ``.hypothesis/`` and replayed first on the next run.
- ``thorough``: 20 times the examples, for hunting bugs before a release:
  ``HYPOTHESIS_PROFILE=thorough python -m pytest tests/shared/test_hostile_updates.py``.

``HYPOTHESIS_PROFILE`` names the profile to use (``pytest --hypothesis-profile=NAME`` too). An
example that once failed is pinned in its test with ``@example(...)``: every profile runs it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from hypothesis import settings

__all__ = ["EXAMPLES", "PROFILES", "load_profile", "profile_name"]

EXAMPLES = 60  # per test in ``ci`` and ``dev``; a test may ask for fewer with @settings
PROFILES = {
    "ci": settings(
        max_examples=EXAMPLES, derandomize=True, database=None, deadline=None, print_blob=True
    ),
    "dev": settings(max_examples=EXAMPLES),
    "thorough": settings(max_examples=EXAMPLES * 20, deadline=None),
}
ENV = "HYPOTHESIS_PROFILE"


def in_ci(environ: Mapping[str, str]) -> bool:
    return environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def profile_name(environ: Mapping[str, str] = os.environ) -> str:
    """The profile ``environ`` asks for: ``HYPOTHESIS_PROFILE``, else ``ci`` in CI, else ``dev``."""
    chosen = environ.get(ENV, "").strip()
    if not chosen:
        return "ci" if in_ci(environ) else "dev"
    if chosen not in PROFILES:
        known = ", ".join(sorted(PROFILES))
        raise ValueError(f"{ENV}={chosen!r} is not a profile of the test kit ({known})")
    return chosen


def load_profile(environ: Mapping[str, str] = os.environ) -> str:
    """Register the profiles, load the one ``environ`` asks for, and return its name."""
    for name, profile in PROFILES.items():
        settings.register_profile(name, profile)
    name = profile_name(environ)
    settings.load_profile(name)
    return name
