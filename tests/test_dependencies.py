"""requirements-dev.txt declares everything the repository's own Python imports and everything
the generated bots need, so the environment `.ci/run` makes from it alone runs every test.

deptry reads its settings from pyproject.toml's [tool.deptry]; a generated bot's imports are
checked against the bot's own pyproject.toml per render (tests/test_render.py)."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import jinja2
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import PYTHON, REPO_ROOT, child_env, run, tail

# What the repository runs in this environment: the tests, their helpers, the scripts, the
# Jinja extensions, the benchmarks, and ecosystem_host (tests/test_host.py runs it from here).
SCANNED = ("tests", "devkit", "scripts", "extensions", "benchmarks", "ecosystem/ecosystem_host")
REQUIREMENTS = REPO_ROOT / "requirements-dev.txt"
_JINJA_CONDITION = re.compile(r"\{%.*?%\}")


def deptry(*extra: str) -> subprocess.CompletedProcess[str]:
    return run(
        [PYTHON, "-m", "deptry", *SCANNED, "--no-ansi", *extra],
        REPO_ROOT,
        timeout=120,
        env=child_env(NO_COLOR="1"),
    )


def declared(lines: list[str]) -> set[str]:
    """Canonical distribution names of a requirements file's lines."""
    names: set[str] = set()
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if text:
            names.add(canonicalize_name(Requirement(text).name))
    return names


def test_every_import_is_declared_in_requirements_dev() -> None:
    result = deptry()
    assert result.returncode == 0, (
        "an import of the repository's own code is not declared in requirements-dev.txt "
        f"(add the distribution there):\n{tail(result.stdout)}"
    )


@pytest.mark.parametrize("distribution", ["redis", "PyYAML", "copier"])
def test_an_undeclared_import_fails_the_check(tmp_path: Path, distribution: str) -> None:
    """The check above is not vacuous: without one line the same scan reports the import."""
    kept = [
        line
        for line in REQUIREMENTS.read_text(encoding="utf-8").splitlines()
        if canonicalize_name(distribution) not in declared([line])
    ]
    assert len(kept) < len(REQUIREMENTS.read_text(encoding="utf-8").splitlines())
    trimmed = tmp_path / "requirements.txt"
    trimmed.write_text("\n".join(kept) + "\n", encoding="utf-8")
    result = deptry("--requirements-files", str(trimmed))
    assert result.returncode != 0, result.stdout
    module = {"PyYAML": "yaml"}.get(distribution, distribution)
    assert f"'{module}' imported but" in result.stdout, result.stdout


def test_first_party_names_are_the_repositorys_own_modules() -> None:
    """known_first_party exempts names from the check: each must be a module of this repository
    (a directory of Python files or a .py file, Jinja conditions in file names resolved)."""
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    first_party = set(config["tool"]["deptry"]["known_first_party"])
    files = subprocess.run(
        ["git", "ls-files", "--", "*.py", "*.py.jinja", "*.py{% endif %}.jinja"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    modules = set()
    for name in files:
        if name.startswith("examples/"):
            continue
        path = Path(_JINJA_CONDITION.sub("", name).removesuffix(".jinja"))
        modules.add(path.stem)
        modules.update(path.parts[:-1])
    assert first_party <= modules, f"not modules of this repository: {first_party - modules}"


def test_generated_bots_dependencies_are_in_requirements_dev() -> None:
    """The renders' own suites, linters and type checks run in this environment (runtime and
    `dev` dependencies of template/pyproject.toml.jinja, every answer's branch included)."""
    source = (REPO_ROOT / "template" / "pyproject.toml.jinja").read_text(encoding="utf-8")
    rendered = jinja2.Template(source).render(
        bot_slug="x", description="", author="", package_name="x", mode="media", external_api=True
    )
    project = tomllib.loads(rendered)["project"]
    needed = declared(project["dependencies"] + project["optional-dependencies"]["dev"])
    have = declared(REQUIREMENTS.read_text(encoding="utf-8").splitlines())
    assert needed <= have, f"generated bots need, requirements-dev.txt lacks: {needed - have}"
