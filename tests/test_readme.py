"""README.md's two commands are the ones that work: the scaffold command renders a bot, and the
test command is what CI runs; the README's tree of a generated bot and its links to the
benchmarks' figures are true."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

from tests.helpers import REPO_ROOT, assert_ok, child_env, recorded_answers, render, run

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
    # The defaults agree: a text bot (the default mode) with a name that fits any bot.
    assert (answers["bot_name"], answers["package_name"], answers["mode"]) == (
        "My Bot",
        "my_bot",
        "text",
    )
    assert (dst / answers["package_name"] / "__main__.py").is_file()
    assert (dst / "ecosystem_shared" / "runtime.py").is_file()
    assert test_command == "bash .ci/run"


def test_ci_runs_the_documented_test_command() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'TEST_CMD=("$PYTHON" -m pytest tests)' in ci
    assert "`python -m pytest tests`" in README.read_text(encoding="utf-8")


def section(title: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, f"README.md has no section {title!r}"
    return match[1]


def tree_entries() -> list[tuple[str, str]]:
    """(path, description) of each entry of "What a generated bot looks like" (two-space indent;
    deeper lines continue the description above)."""
    block = re.search(r"```\nmy-bot/\n(.*?)```", section("What a generated bot looks like"), re.S)
    assert block, "no my-bot/ tree"
    entries = []
    for line in block[1].splitlines():
        if re.match(r"  \S", line):
            path, _, description = line.strip().partition(" ")
            entries.append((path, description.strip()))
    return entries


def covered(name: str, listed: set[str]) -> bool:
    """A top-level file or directory of a render is listed itself or through a path inside it."""
    return any(path.rstrip("/") == name or path.startswith(f"{name}/") for path in listed)


def test_readme_tree_lists_each_file_once_and_every_file_of_a_render(tmp_path: Path) -> None:
    entries = tree_entries()
    paths = [path for path, _ in entries]
    assert len(paths) == len(set(paths)), (
        f"listed twice: {sorted({p for p in paths if paths.count(p) > 1})}"
    )
    media_only = {
        path for path, description in entries if description.startswith("media bots only")
    }
    for answers in ({}, {"mode": "media"}):
        bot = render(tmp_path / (answers.get("mode") or "default"), **answers)
        package = recorded_answers(bot)["package_name"]
        listed = {path.replace("<package_name>", package) for path in paths}
        for path in sorted(listed):
            if answers or path not in media_only:
                assert (bot / path).exists(), f"README lists {path}, not in a render of {answers}"
        top_level = {entry.name for entry in bot.iterdir()} - {".git"}
        missing = sorted(name for name in top_level if not covered(name, listed))
        assert not missing, f"a render of {answers} has {missing}, README's tree does not list them"
        if not answers:
            assert not [path for path in media_only if (bot / path).exists()]


def github_anchor(heading: str) -> str:
    """GitHub's id of a Markdown heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_performance_headlines_link_to_the_benchmarks_figures() -> None:
    """README.md keeps one line per benchmark; the figures live in benchmarks/README.md."""
    performance = section("Performance")
    benchmarks = (REPO_ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    anchors = {github_anchor(h) for h in re.findall(r"^#+ (.*)$", benchmarks, re.M)}
    links = re.findall(r"\(benchmarks/README\.md#([^)]+)\)", performance)
    # Every benchmark benchmarks/README.md documents (`python benchmarks/<name>.py`).
    scripts = sorted(set(re.findall(r"python benchmarks/(\w+\.py)", benchmarks)))
    headlines = [line for line in performance.splitlines() if line.startswith("- ")]
    assert len(headlines) == len(links) == len(scripts), (headlines, scripts)
    assert set(links) <= anchors, f"no such heading in benchmarks/README.md: {set(links) - anchors}"
    for script in scripts:
        assert sum(f"`{script}`" in line for line in headlines) == 1, f"one headline for {script}"
    assert "|---" not in performance, "tables of figures belong in benchmarks/README.md"
