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

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
# Restricts the render matrix to one case id (the GitHub workflow runs one job per case).
COMBO_ENV = "TEMPLATE_COMBO"


@dataclass(frozen=True)
class Case:
    """One set of answers to render; `id` names it in test ids and in TEMPLATE_COMBO."""

    id: str
    answers: Mapping[str, Any] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return str(self.answers.get("mode", "text"))

    def flag(self, name: str) -> bool:
        """A boolean answer, falling back to copier.yml's default."""
        if name in self.answers:
            return bool(self.answers[name])
        return self.mode == "media" if name == "local_bot_api" else False


def _combo(mode: str, local_bot_api: bool, crm: bool) -> Case:
    case_id = f"{mode}-{str(local_bot_api).lower()}-{str(crm).lower()}"
    return Case(case_id, {"mode": mode, "local_bot_api": local_bot_api, "crm": crm})


# Every mode x local_bot_api x crm.
COMBOS: tuple[Case, ...] = tuple(
    _combo(mode, local, crm)
    for mode, local, crm in itertools.product(("text", "media"), (False, True), (False, True))
)

# Names and texts that stress slugs, package names and quoting in every rendered file.
ODD_CASES: tuple[Case, ...] = (
    Case("cyrillic-name", {"bot_name": "Бот Картинок", "mode": "media", "crm": True}),
    Case("digits-name", {"bot_name": "7 Wonders Bot"}),
    Case(
        "punctuation-name",
        {
            "bot_name": "Mr. Bot's #1 (beta)!",
            "author": 'Anna "Ann" O\'Brien \\ Co',
            "crm": True,
        },
    ),
    Case("external-api-en", {"external_api": True, "language": "en"}),
)

ALL_CASES: tuple[Case, ...] = COMBOS + ODD_CASES


def selected_cases() -> tuple[Case, ...]:
    """ALL_CASES, or the one case named by TEMPLATE_COMBO (an unknown name is an error)."""
    wanted = os.environ.get(COMBO_ENV, "").strip()
    if not wanted:
        return ALL_CASES
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
