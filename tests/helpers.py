"""Rendering helpers and the answer sets the template tests cover."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from devkit.render import copy_template
from tests.allpairs import greedy_pairs, missing_pairs, pairs_of_factors

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
# Restricts the render matrix to one case id (the GitHub workflow runs one job per case).
COMBO_ENV = "TEMPLATE_COMBO"


@dataclass(frozen=True)
class Case:
    """One set of answers to render; `id` names it in test ids and in TEMPLATE_COMBO.

    ``suite``: whether the render tests run the generated bot's own pytest for this case (the
    all-pairs sets are rendered, linted and compiled only; see PAIR_CASES).
    """

    id: str
    answers: Mapping[str, Any] = field(default_factory=dict)
    suite: bool = True

    @property
    def mode(self) -> str:
        return str(self.answers.get("mode", "text"))

    def flag(self, name: str) -> bool:
        """A boolean answer, falling back to copier.yml's default."""
        if name in self.answers:
            return bool(self.answers[name])
        return self.mode == "media" if name == "local_bot_api" else False

    def level(self, factor: str) -> str:
        """The value of one PAIR_FACTORS factor in this case, copier.yml's defaults applied."""
        if factor == "name":
            return next(
                (
                    kind
                    for kind, answers in NAME_KINDS.items()
                    if answers and answers.items() <= self.answers.items()
                ),
                "latin",
            )
        if factor in ("local_bot_api", "crm", "external_api"):
            return str(self.flag(factor)).lower()
        return str(self.answers.get(factor, ANSWER_DEFAULTS[factor]))


def _combo(mode: str, local_bot_api: bool, crm: bool) -> Case:
    case_id = f"{mode}-{str(local_bot_api).lower()}-{str(crm).lower()}"
    return Case(case_id, {"mode": mode, "local_bot_api": local_bot_api, "crm": crm})


# The template-owned tests that drive a bot's own dispatcher in process (its routers, as the bot's
# code builds them): what of tests/shared a render runs when its whole suite runs elsewhere.
DISPATCHER_TESTS = (
    "tests/shared/test_dispatcher.py",
    "tests/shared/test_fsm_memory.py",
    "tests/shared/test_hostile_updates.py",
)

# Every mode x local_bot_api x crm.
COMBOS: tuple[Case, ...] = tuple(
    _combo(mode, local, crm)
    for mode, local, crm in itertools.product(("text", "media"), (False, True), (False, True))
)

# Names and texts that stress slugs, package names and quoting in every rendered file.
ODD_CASES: tuple[Case, ...] = (
    # Every feature at once (external_api with media and crm), on the newest Python.
    Case(
        "cyrillic-name",
        {
            "bot_name": "Бот Картинок",
            "mode": "media",
            "crm": True,
            "external_api": True,
            "python_version": "3.13",
        },
    ),
    Case("digits-name", {"bot_name": "7 Wonders Bot"}),
    Case(
        "punctuation-name",
        {
            "bot_name": "Mr. Bot's #1 (beta)!",
            "author": 'Anna "Ann" O\'Brien \\ Co',
            "crm": True,
        },
    ),
    Case("external-api-en", {"external_api": True, "crm": True, "language": "en"}),
)

# ------------------------------------------------------------------ all pairs of answers
# Every bot answer the generated code depends on, with the values the tests render. `name` is
# a kind of bot name: it decides the package name, whether that sorts before ecosystem_shared
# (import sorting), and the quoting in every file that repeats it.
NAME_KINDS: dict[str, dict[str, str]] = {
    "latin": {},  # My Bot (the default) -> my_bot, sorts after ecosystem_shared
    "cyrillic": {"bot_name": "Бот Картинок"},  # -> bot_kartinok, sorts before it
    "digits": {"bot_name": "7 Wonders Bot"},  # -> bot_7_wonders_bot, sorts before it
    "punctuation": {"bot_name": "Mr. Bot's #1 (beta)!"},  # -> mr_bot_s_1_beta, quoting
}
PAIR_FACTORS: dict[str, tuple[str, ...]] = {
    "mode": ("text", "media"),
    "local_bot_api": ("false", "true"),
    "crm": ("false", "true"),
    "external_api": ("false", "true"),
    "language": ("ru", "en"),
    "python_version": ("3.11", "3.12", "3.13"),
    "name": tuple(NAME_KINDS),
}
# copier.yml's defaults of the factors that are plain answers.
ANSWER_DEFAULTS = {"mode": "text", "language": "ru", "python_version": "3.12"}


def case_levels(case: Case) -> dict[str, str]:
    """The case's value of every PAIR_FACTORS factor."""
    return {factor: case.level(factor) for factor in PAIR_FACTORS}


def _answers(row: Mapping[str, str]) -> dict[str, Any]:
    answers: dict[str, Any] = {
        name: value == "true" if name in ("local_bot_api", "crm", "external_api") else value
        for name, value in row.items()
        if name != "name"
    }
    return answers | NAME_KINDS[row["name"]]


def _pair_cases(existing: Sequence[Case]) -> tuple[Case, ...]:
    levels = map(case_levels, existing)
    covered = pairs_of_factors(PAIR_FACTORS) - set(missing_pairs(levels, PAIR_FACTORS))
    rows = greedy_pairs(PAIR_FACTORS, covered)
    return tuple(
        Case(f"pairs-{number:02d}", _answers(row), suite=False)
        for number, row in enumerate(rows, start=1)
    )


# What COMBOS and ODD_CASES leave out: with them, every pair of PAIR_FACTORS values is rendered,
# linted (ruff, mypy, bandit, deptry) and compiled (tests/test_render.py).
PAIR_CASES: tuple[Case, ...] = _pair_cases(COMBOS + ODD_CASES)
# TEMPLATE_COMBO=all-pairs selects them (one CI job for the group).
PAIR_GROUP = "all-pairs"

ALL_CASES: tuple[Case, ...] = COMBOS + ODD_CASES + PAIR_CASES


def selected_cases() -> tuple[Case, ...]:
    """ALL_CASES, the one case named by TEMPLATE_COMBO, or PAIR_CASES for `all-pairs`.

    An unknown name is an error.
    """
    wanted = os.environ.get(COMBO_ENV, "").strip()
    if not wanted:
        return ALL_CASES
    if wanted == PAIR_GROUP:
        return PAIR_CASES
    chosen = tuple(case for case in ALL_CASES if case.id == wanted)
    if not chosen:
        known = ", ".join(case.id for case in ALL_CASES)
        raise ValueError(f"{COMBO_ENV}={wanted!r} is not a known case; known: {known}")
    return chosen


def render(tmp_path: Path, /, **answers: Any) -> Path:
    """The bot ``answers`` give, rendered into tmp_path/bot."""
    dst = tmp_path / "bot"
    copy_template(dst, answers)
    return dst


class RenderCache:
    """Renders each case once per test session (per xdist worker), failures included."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self._factory = factory
        self._results: dict[str, Path | str] = {}

    def get(self, case: Case) -> Path:
        if case.id not in self._results:
            try:
                self._results[case.id] = render(self._factory.mktemp(case.id), **case.answers)
            except Exception:  # noqa: BLE001 - every test of the case reports it
                self._results[case.id] = traceback.format_exc(limit=-3)
        result = self._results[case.id]
        if isinstance(result, str):
            pytest.fail(f"copier copy failed for {case.id} {dict(case.answers)}:\n{result}")
        return result


def recorded_answers(project: Path) -> dict[str, Any]:
    loaded = yaml.safe_load((project / ".copier-answers.yml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), "the answers file is not a mapping"
    return loaded


def read(project: Path, name: str) -> str:
    """A rendered text file; a missing one fails the test with its name."""
    path = project / name
    if not path.is_file():
        pytest.fail(f"{name} was not rendered", pytrace=False)
    return path.read_text(encoding="utf-8")


def project_files(root: Path) -> list[Path]:
    """Rendered files, without caches that tools create after rendering."""
    skip = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".git"}
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file() and not skip.intersection(path.relative_to(root).parts)
    )


_MARKERS = ("{{", "}}", "{%", "%}", "{#", "#}")
# `${{ ... }}` is a GitHub Actions expression and `${#var}` a shell string length: both legitimate.
_GITHUB_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
_JINJA_OPENER = re.compile(r"(?<!\$)\{[{%#]")


def jinja_leftovers(root: Path) -> list[str]:
    """`path:line: text` for every unrendered Jinja marker, plus `.jinja` files and names."""
    found: list[str] = []
    for path in project_files(root):
        rel = path.relative_to(root).as_posix()
        if path.name.endswith(".jinja") or any(marker in rel for marker in _MARKERS):
            found.append(f"{rel}: unrendered file name")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary file
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = _GITHUB_EXPRESSION.sub("", line)
            if _JINJA_OPENER.search(stripped):
                found.append(f"{rel}:{number}: {line.strip()[:120]}")
    return found


def run(
    cmd: Sequence[str],
    cwd: Path,
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a tool; stdout and stderr interleaved in `.stdout`; a timeout is a failed run."""
    try:
        return subprocess.run(
            list(cmd),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout if isinstance(exc.stdout, str) else (exc.stdout or b"").decode()
        return subprocess.CompletedProcess(list(cmd), -9, f"{output}\nTIMEOUT after {timeout}s")


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def assert_ok(result: subprocess.CompletedProcess[str], what: str, lines: int = 60) -> None:
    """Fail with the tool's last lines (not a repr of the whole run) when it did not exit 0."""
    if result.returncode != 0:
        message = f"{what} exited {result.returncode}:\n{tail(result.stdout, lines)}"
        pytest.fail(message, pytrace=False)


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a generated bot's tools: no pytest/xdist state leaking from this run."""
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_", "COV_"))
    }
    env.update(extra)
    return env
