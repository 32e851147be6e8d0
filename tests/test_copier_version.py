"""The copier version users are told to install is the one the tests run on (issue 13, item 11).

copier.yml's `_min_copier_version` is the oldest copier the update safety (docs/UPDATING.md) was
verified on. requirements-dev.txt pins exactly that version, so CI tests the oldest supported
copier; README.md and the generated README ask users for at least that version.
"""

from __future__ import annotations

import re
from importlib.metadata import version

import yaml

from tests.helpers import REPO_ROOT

INSTALL_SPEC = re.compile(r'"copier>=([0-9][0-9.]*)"')


def minimum() -> str:
    config = yaml.safe_load((REPO_ROOT / "copier.yml").read_text(encoding="utf-8"))
    return str(config["_min_copier_version"])


def test_ci_installs_exactly_the_minimum_copier() -> None:
    lines = (REPO_ROOT / "requirements-dev.txt").read_text(encoding="utf-8").splitlines()
    pins = [line.strip() for line in lines if re.match(r"copier\s*[=<>!~]", line)]
    assert pins == [f"copier=={minimum()}"], (
        f"requirements-dev.txt must pin copier=={minimum()} (copier.yml's _min_copier_version) "
        f"so CI tests the oldest supported copier; found {pins}"
    )


def test_the_tests_run_on_the_minimum_copier() -> None:
    assert version("copier") == minimum(), (
        f"copier {version('copier')} is installed but copier.yml promises {minimum()}: "
        "pip install -r requirements-dev.txt"
    )


def test_readmes_ask_for_the_minimum_copier() -> None:
    for name in ("README.md", "template/README.md.jinja"):
        text = (REPO_ROOT / name).read_text(encoding="utf-8")
        found = INSTALL_SPEC.findall(text)
        assert found, f'{name} has no `pip install "copier>=X"` line'
        assert set(found) == {minimum()}, f"{name} asks for copier>={found}, not {minimum()}"
