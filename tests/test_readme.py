"""README.md's two commands are the ones that work: the scaffold command renders a bot, and the
test command is what CI runs."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

from tests.helpers import REPO_ROOT, assert_ok, child_env, recorded_answers, run

README = REPO_ROOT / "README.md"


def first_bash_block() -> list[str]:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"```bash\n(.*?)```", text, re.S)
    assert match, "README.md has no bash block"
    return [line for line in match[1].splitlines() if line and not line.startswith("#")]


def test_readme_scaffold_command_renders_a_bot(tmp_path: Path) -> None:
    scaffold, test_command = first_bash_block()
    install, _, copy = scaffold.partition(" && ")
    assert install.startswith("pip install") and "copier-template-extensions" in install
    argv = shlex.split(copy)
    assert argv[:2] == ["copier", "copy"] and argv[-2] == "."
    copier = shutil.which("copier")
    assert copier, "copier is not on PATH (pip install -r requirements-dev.txt)"
    dst = tmp_path / "my-bot"
    result = run([copier, *argv[1:-1], str(dst)], REPO_ROOT, timeout=300, env=child_env())
    assert_ok(result, "the README's copier copy")
    answers = recorded_answers(dst)
    assert (dst / answers["package_name"] / "__main__.py").is_file()
    assert (dst / "ecosystem_shared" / "runtime.py").is_file()
    assert test_command == "bash .ci/run"


def test_ci_runs_the_documented_test_command() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'TEST_CMD=("$PYTHON" -m pytest tests)' in ci
    assert "`python -m pytest tests`" in README.read_text(encoding="utf-8")
