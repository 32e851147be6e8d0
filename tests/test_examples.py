"""examples/ is exactly what the template renders from examples/answers/*.yml.

A template change that alters any example must come with `python scripts/render_examples.py`,
so reviewers see its effect on real bots in the same diff.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {"picture-bot", "text-bot", "crm-bot", "api-bot", "ecosystem"}


def _load_script() -> ModuleType:
    path = REPO_ROOT / "scripts/render_examples.py"
    spec = importlib.util.spec_from_file_location("render_examples", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


render_examples = _load_script()


def test_every_answers_file_has_a_rendered_example() -> None:
    names = set(render_examples.example_names())
    assert names == EXPECTED
    rendered = {path.name for path in (REPO_ROOT / "examples").iterdir() if path.is_dir()} - {
        "answers"
    }
    assert rendered == names, "run: python scripts/render_examples.py"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_matches_a_fresh_render(name: str, tmp_path: Path) -> None:
    render_examples.render_example(name, tmp_path / name)
    diff = render_examples.diff_trees(
        render_examples.tree(REPO_ROOT / "examples" / name),
        render_examples.tree(tmp_path / name),
        name,
    )
    if diff:
        pytest.fail(f"examples/{name} is stale; run: python scripts/render_examples.py\n{diff}")


def test_rendered_answers_are_stable_and_complete(tmp_path: Path) -> None:
    """The volatile lines are gone and every answer given in the answers file is recorded."""
    render_examples.render_example("api-bot", tmp_path / "api-bot")
    recorded = (tmp_path / "api-bot/.copier-answers.yml").read_text(encoding="utf-8")
    assert "_commit:" not in recorded and "_src_path:" not in recorded
    given = render_examples.load_answers("api-bot")
    for key, value in given.items():
        line = f"{key}: {str(value).lower() if isinstance(value, bool) else value}"
        assert line in recorded.splitlines(), f"{line!r} missing from the rendered answers"


def test_diff_trees_reports_the_first_differences() -> None:
    diff = render_examples.diff_trees(
        {"a.txt": b"one\n", "gone.txt": b"x\n"}, {"a.txt": b"two\n", "new.txt": b"y\n"}, "demo"
    )
    assert "demo: 3 file(s) differ" in diff
    assert "-one\n+two\n" in diff
    assert "+++ /dev/null" in diff and "--- /dev/null" in diff
    assert render_examples.diff_trees({"a": b"1"}, {"a": b"1"}, "same") == ""


def test_no_rendered_file_is_git_ignored() -> None:
    """A file git ignores would be missing from a fresh clone and fail the comparison there."""
    files = [
        f"examples/{name}/{key}"
        for name in sorted(EXPECTED)
        for key, content in render_examples.tree(REPO_ROOT / "examples" / name).items()
        if not content.startswith(b"symlink -> ")
    ]
    assert files
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"],
        cwd=REPO_ROOT,
        input="\n".join(files),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr  # 1: nothing ignored
    assert result.stdout.split() == []
