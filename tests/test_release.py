"""Releases (docs/UPDATING.md): scripts/release.py cuts a CHANGELOG section, and on a commit that
adds one, names the tag and the notes the release workflow publishes.

The tag part runs as the workflow runs it, as a process, on a throwaway git repository: commits
with and without a release, a merge, then `git tag` with what it printed.
"""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO_ROOT
from tests.test_update import _git_identity, commit_all, git  # noqa: F401 - autouse identity

sys.path.insert(0, str(REPO_ROOT / "scripts"))  # scripts/ is not a package
import release

SCRIPT = REPO_ROOT / "scripts" / "release.py"
DAY = datetime.date(2026, 12, 5)
CHANGELOG = """# Changelog

Intro text.

## Unreleased

- A fix.
- A feature.

  More about it.

## 0.1.0

- First release.
"""


def run_script(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, check=False
    )


# ----------------------------------------------------------------------------- cutting
def test_cut_moves_unreleased_into_a_dated_section() -> None:
    cut = release.cut(CHANGELOG, "0.2.0", DAY)
    assert cut == CHANGELOG.replace(
        "## Unreleased\n\n- A fix.",
        "## Unreleased\n\n## 0.2.0 (2026-12-05)\n\n- A fix.",
    )
    [new, old] = release.sections(cut)
    assert (str(new.version), new.title) == ("0.2.0", "0.2.0 (2026-12-05)")
    assert new.notes == "- A fix.\n- A feature.\n\n  More about it."
    assert (str(old.version), old.notes) == ("0.1.0", "- First release.")


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        ("0.1.0", "not greater than the released 0.1.0"),
        ("0.0.9", "not greater than the released 0.1.0"),
        ("v0.2.0", "write the version as 0.2.0"),
        ("banana", "not a PEP 440 version"),
        ("0.2.0rc1", "not a final release version"),
        ("0.2", "write the version as 0.2, not"),  # 0.2 is PEP 440 and greater: accepted below
    ],
)
def test_cut_refuses_what_is_not_a_next_release(version: str, reason: str) -> None:
    if version == "0.2":
        assert "## 0.2 (2026-12-05)" in release.cut(CHANGELOG, version, DAY)
        return
    with pytest.raises(release.Refused, match=reason):
        release.cut(CHANGELOG, version, DAY)


def test_cut_refuses_an_empty_unreleased_and_a_missing_one() -> None:
    empty = release.cut(CHANGELOG, "0.2.0", DAY)
    with pytest.raises(release.Refused, match=r"'## Unreleased' in CHANGELOG\.md is empty"):
        release.cut(empty, "0.3.0", DAY)
    with pytest.raises(release.Refused, match="has no '## Unreleased' line"):
        release.cut(CHANGELOG.replace("## Unreleased", "## Next"), "0.2.0", DAY)


def test_the_script_writes_the_file_and_exits_2_on_refusal(tmp_path: Path) -> None:
    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text(CHANGELOG, encoding="utf-8")
    done = run_script("0.2.0", "--date", "2026-12-05", "--changelog", str(changelog))
    assert done.returncode == 0, done.stderr
    assert changelog.read_text(encoding="utf-8") == release.cut(CHANGELOG, "0.2.0", DAY)
    assert 'git commit -am "Release 0.2.0"' in done.stdout

    for args, reason in [
        (("0.2.0",), "not greater than the released 0.2.0"),
        (("0.3.0",), "is empty: nothing to release"),
    ]:
        refused = run_script(*args, "--date", "2026-12-05", "--changelog", str(changelog))
        assert refused.returncode == 2
        assert refused.stderr.startswith("release.py: refused: ") and reason in refused.stderr
    assert changelog.read_text(encoding="utf-8") == release.cut(CHANGELOG, "0.2.0", DAY)


def test_the_date_defaults_to_today(tmp_path: Path) -> None:
    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text(CHANGELOG, encoding="utf-8")
    before = datetime.date.today()
    assert run_script("0.2.0", "--changelog", str(changelog)).returncode == 0
    text = changelog.read_text(encoding="utf-8")
    assert any(f"## 0.2.0 ({day})" in text for day in {before, datetime.date.today()})


def test_this_repositorys_changelog_parses() -> None:
    """The real CHANGELOG.md: an Unreleased line and released versions in descending order."""
    text = (REPO_ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert release.UNRELEASED in text.splitlines()
    versions = release.released_versions(text)
    assert versions and versions == sorted(versions, reverse=True)


# ----------------------------------------------------------------------------- tagging
def write_changelog(repo: Path, text: str, message: str) -> str:
    (repo / "CHANGELOG.md").write_text(text, encoding="utf-8")
    commit_all(repo, message)
    return git(repo, "rev-parse", "HEAD").strip()


def tag_of(repo: Path, rev: str, notes: Path | None = None) -> tuple[str, str]:
    """What the workflow's step gets: the first line (the tag) and the rest."""
    extra = ["--notes-file", str(notes)] if notes else []
    done = run_script("tag", rev, "--repo", str(repo), *extra, cwd=repo)
    assert done.returncode == 0, done.stderr
    first, _, rest = done.stdout.partition("\n")
    return first, rest


def test_tag_names_the_release_a_commit_makes_and_nothing_else(tmp_path: Path) -> None:
    repo = tmp_path / "template"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    first = write_changelog(repo, CHANGELOG.replace("\n## Unreleased", "\n## Unreleased\n"), "old")
    (repo / "README.md").write_text("readme\n", encoding="utf-8")
    commit_all(repo, "not touching the changelog")
    unrelated = git(repo, "rev-parse", "HEAD").strip()
    more = write_changelog(repo, CHANGELOG.replace("- A fix.", "- A fix.\n- Another."), "entry")
    cut = release.cut((repo / "CHANGELOG.md").read_text(encoding="utf-8"), "0.2.0", DAY)
    released = write_changelog(repo, cut, "Release 0.2.0")

    # The root commit adds 0.1.0: it is that release's commit (the repository's first release).
    assert tag_of(repo, first)[0] == "v0.1.0"
    assert tag_of(repo, unrelated) == ("", "")
    assert tag_of(repo, more) == ("", "")
    tag, notes = tag_of(repo, released)
    assert tag == "v0.2.0"
    assert notes == "- A fix.\n- Another.\n- A feature.\n\n  More about it.\n"
    notes_file = tmp_path / "notes.md"
    assert tag_of(repo, "HEAD", notes_file) == ("v0.2.0", "")
    assert notes_file.read_text(encoding="utf-8") == notes

    # What the workflow then does with it (through the API there; with git here).
    git(repo, "tag", tag, released)
    assert git(repo, "tag", "--points-at", released).split() == ["v0.2.0"]
    assert git(repo, "describe", "--tags", "--exact-match", "HEAD").strip() == "v0.2.0"
    # Every release commit of the history, oldest first (the upgrade test's list).
    assert [(commit, str(s.version)) for commit, s in release.release_commits(repo)] == [
        (first, "0.1.0"),
        (released, "0.2.0"),
    ]


def test_a_merge_that_brings_a_release_is_tagged_and_a_later_merge_is_not(tmp_path: Path) -> None:
    repo = tmp_path / "template"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write_changelog(repo, CHANGELOG, "start")
    git(repo, "switch", "-q", "-c", "release-branch")
    write_changelog(repo, release.cut(CHANGELOG, "0.2.0", DAY), "Release 0.2.0")
    git(repo, "switch", "-q", "main")
    (repo / "other.txt").write_text("x\n", encoding="utf-8")
    commit_all(repo, "meanwhile on main")
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge the release", "release-branch")
    assert tag_of(repo, "HEAD")[0] == "v0.2.0"  # the merge brings 0.2.0 to main
    (repo / "other.txt").write_text("y\n", encoding="utf-8")
    commit_all(repo, "after the release")
    assert tag_of(repo, "HEAD") == ("", "")


def test_tag_fails_clearly_outside_a_repository(tmp_path: Path) -> None:
    done = run_script("tag", "HEAD", "--repo", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2 and "release.py: git failed: " in done.stderr


# ----------------------------------------------------------------------------- workflow
def test_release_workflow_has_least_privileges_and_runs_the_tag_step() -> None:
    """The workflow (actionlint, zizmor and the pin check: tests/test_workflows.py)."""
    path = REPO_ROOT / ".github" / "workflows" / "release.yml"
    workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert workflow[True] == {"push": {"branches": ["main"]}}  # YAML 1.1 reads `on` as True
    assert workflow["permissions"] == {}
    [job] = workflow["jobs"].values()
    assert job["permissions"] == {"contents": "write"}
    checkout = job["steps"][0]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["persist-credentials"] is False
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    assert 'scripts/release.py tag "$GITHUB_SHA" --notes-file' in runs
    assert 'gh release create "$TAG"' in runs and '--target "$GITHUB_SHA"' in runs
