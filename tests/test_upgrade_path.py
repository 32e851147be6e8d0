"""Bots made by every earlier release of this template update to the working tree and stay green.

The releases come from this repository's own history: each commit on the first-parent history of
HEAD that adds a ``## X.Y.Z`` header to CHANGELOG.md (scripts/release.py, what the release
workflow tags). Those earlier than the working tree's version are tagged ``vX.Y.Z`` in a throwaway
clone; the working tree (uncommitted edits included) is committed on top and tagged as the next
version (the one after the last release, or the release HEAD makes, or a ``_migrations`` version
of copier.yml if higher). Then, for each earlier release and answer set, as a user would:

- ``copier copy`` at the release, commit, ``copier update --trust --defaults`` to the working
  tree's tag: no conflict, no ``.rej``, the versioned migrations ran;
- what the bot's CI runs: ``ruff check``, ``ruff format --check``, ``mypy``, ``bandit``,
  ``deptry`` and its suite, ``pytest -m "slow or not slow"`` (whole in the template's GitHub
  CI, one job per answer set; on one machine, see whole_suite); green with no hand edits;
- the same bots in an ecosystem rendered from the working tree go through ``./update-bots`` and
  end ``updated`` (its checks there: ruff; mypy and the suites ran above on the same updates).

A new release adds itself: once its commit is in the history, it is one more earlier release.
A shallow clone has no history to find releases in: the tests fail and say how to fetch it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.version import Version

from devkit.render import copy_template
from tests.helpers import (
    DISPATCHER_TESTS,
    PYTHON,
    REPO_ROOT,
    assert_ok,
    child_env,
    recorded_answers,
    run,
    tail,
)
from tests.test_update import (  # _git_identity: autouse, commits need a fixed identity
    SNAPSHOT_SKIP,
    _git_identity,  # noqa: F401
    assert_clean_merge,
    commit_all,
    git,
)

sys.path.insert(0, str(REPO_ROOT / "scripts"))  # scripts/ is not a package
import release

# Answer sets: a text bot; the picture bot with CRM on the Local Bot API; CRM with the external
# API; a Cyrillic name (package bot_kartinok, which sorts before ecosystem_shared).
UPGRADE_CASES: dict[str, dict[str, Any]] = {
    "text": {"bot_name": "Text Bot"},
    "media-crm-local": {
        "bot_name": "Media Bot",
        "mode": "media",
        "crm": True,
        "local_bot_api": True,
    },
    "crm-external": {"bot_name": "Api Bot", "crm": True, "external_api": True, "language": "en"},
    "cyrillic": {"bot_name": "Бот Картинок"},
}
COPIER_UPDATE = (PYTHON, "-m", "copier", "update", "--trust", "--defaults", "--conflict", "inline")
UPDATE_TIMEOUT = 300
TOOL_TIMEOUT = 300
SUITE_TIMEOUT = 900
FLEET_TIMEOUT = 900
SHALLOW = (
    "this clone of the template is shallow: the upgrade test finds the releases in the "
    "repository's history. Fetch it: `git fetch --unshallow --tags` (GitHub Actions: "
    "actions/checkout with `fetch-depth: 0`)"
)


# ------------------------------------------------------------------------------ releases
@dataclass(frozen=True)
class Release:
    commit: str
    version: Version

    @property
    def tag(self) -> str:
        return release.tag_name(self.version)


def is_shallow(repo: Path) -> bool:
    return git(repo, "rev-parse", "--is-shallow-repository").strip() == "true"


def unreleased_changes(changelog: str) -> bool:
    """Whether "## Unreleased" has any text under it."""
    lines = changelog.splitlines()
    start = lines.index(release.UNRELEASED) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return any(line.strip() for line in lines[start:end])


def migration_versions(copier_yml: str) -> list[Version]:
    config = yaml.safe_load(copier_yml) or {}
    items = config.get("_migrations") or []
    return [Version(str(item["version"])) for item in items if isinstance(item, dict)]


def working_version(root: Path = REPO_ROOT) -> Version:
    """The version the working tree is, or would be released as."""
    changelog = (root / release.CHANGELOG).read_text(encoding="utf-8")
    released = release.released_versions(changelog)
    last = max(released, default=Version("0.0.0"))
    if released and not unreleased_changes(changelog):
        return last  # HEAD (or the working tree) is that release
    following = Version(f"{last.major}.{last.minor + 1}.0")
    migrations = migration_versions((root / "copier.yml").read_text(encoding="utf-8"))
    return max([following, *migrations])


def earlier_releases(root: Path = REPO_ROOT) -> list[Release]:
    """Every release of HEAD's history older than the working tree, oldest first."""
    if is_shallow(root):
        return []
    current = working_version(root)
    return [
        Release(commit, section.version)
        for commit, section in release.release_commits(root)
        if section.version < current
    ]


def release_params() -> list[Any]:
    """One parameter per earlier release; a shallow clone or no release at all is a failure."""
    found = earlier_releases()
    if not found:
        return [pytest.param(None, id="no-release-found")]
    return [pytest.param(item, id=f"from-{item.version}") for item in found]


def require(item: Release | None) -> Release:
    if is_shallow(REPO_ROOT):
        pytest.fail(SHALLOW, pytrace=False)
    if item is None:
        pytest.fail("no release commit found in the history (no `## X.Y.Z` in CHANGELOG.md)")
    return item


# ------------------------------------------------------------------------ template clone
@dataclass(frozen=True)
class Template:
    path: Path
    target: str  # the working tree's tag


def template_clone(dst: Path) -> Template:
    """A clone of this repository with each earlier release tagged and the working tree committed
    on top, tagged as its version."""
    git(REPO_ROOT, "clone", "--quiet", "--no-checkout", str(REPO_ROOT), str(dst))
    for tag in git(dst, "tag", "--list").split():
        git(dst, "tag", "--delete", tag)  # only the tags this test makes
    for item in earlier_releases():
        git(dst, "tag", item.tag, item.commit)
    git(dst, "checkout", "--quiet", "-B", "main", "HEAD")
    git(dst, "rm", "-r", "-q", "--cached", ".")
    for path in dst.iterdir():
        if path.name != ".git":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    listed = git(REPO_ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for rel in sorted(set(filter(None, listed.split("\0")))):
        src = REPO_ROOT / rel
        if rel.startswith(SNAPSHOT_SKIP) or not src.is_file():
            continue
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst / rel)
    commit_all(dst, "the working tree")
    target = release.tag_name(working_version())
    git(dst, "tag", target)
    return Template(dst, target)


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    if is_shallow(REPO_ROOT):
        pytest.fail(SHALLOW, pytrace=False)
    return template_clone(tmp_path_factory.mktemp("upgrade") / "template")


def render_old_bot(template: Template, old: Release, answers: dict[str, Any], dst: Path) -> Path:
    """The bot as ``old`` renders it, committed in its own repository."""
    copy_template(dst, {"project_type": "bot", **answers}, src=template.path, vcs_ref=old.tag)
    git(dst, "init", "-q", "-b", "main")
    commit_all(dst, f"bot from template {old.tag}")
    return dst


def module_level_routers(bot: Path) -> list[str]:
    """Bot modules still holding a ``router = Router(...)`` (what 0.2.0's migration converts)."""
    return [
        path.relative_to(bot).as_posix()
        for path in sorted(bot.rglob("*.py"))
        if re.search(r"^router = Router\(", path.read_text(encoding="utf-8"), re.MULTILINE)
    ]


# The whole suite of every answer set from every release is what the template's GitHub CI runs:
# one job per answer set (`upgrade` in .github/workflows/ci.yml), chosen with UPGRADE_CASE. A run
# of every case on one machine (.ci/run, a plain `pytest`) takes the whole suite, slow tests
# included, for the bot with the most bot-owned code (media with CRM and the Local Bot API) updated
# from the oldest release; the other updates run the bot's own tests and the template-owned tests
# that drive its dispatcher in process (where 0.1.0's module-level routers broke): the rest of
# tests/shared is the template's verbatim (test_render.py proves it) and meets old bot-owned code
# in the whole runs. Each more whole suite adds 6-9 minutes of work on two cores. On one machine
# the bots come from the oldest release (every migration in a row) and the newest (where most
# deployed bots are); the releases between them are GitHub CI's, so that .ci/run's time does not
# grow with every release (the fleet test of update-bots still takes bots of every release).
CASE_ENV = "UPGRADE_CASE"
FULL_SUITE_UPGRADES = frozenset({"media-crm-local"})


def chosen_case() -> str:
    """The answer set UPGRADE_CASE names ("": every one)."""
    return os.environ.get(CASE_ENV, "").strip()


def case_params() -> list[Any]:
    """The answer sets to update: UPGRADE_CASE's alone, else every one."""
    wanted = chosen_case()
    return [pytest.param(case, id=case) for case in UPGRADE_CASES if wanted in ("", case)] or [
        pytest.param(wanted, id=f"unknown-{wanted}")
    ]


def bot_release_params() -> list[Any]:
    """The releases the per-bot update starts from: every one for UPGRADE_CASE's answer set,
    else the oldest and the newest (see above)."""
    found = release_params()
    if chosen_case() or len(found) <= 2:
        return found
    return [found[0], found[-1]]


def whole_suite(case: str, old: Release) -> bool:
    """Whether this update runs the bot's whole suite (see above)."""
    if chosen_case():
        return True
    return case in FULL_SUITE_UPGRADES and old == earlier_releases()[0]


def suite_paths(case: str, old: Release) -> list[str]:
    """What of an updated bot's suite this test runs: [] is all of it."""
    return [] if whole_suite(case, old) else ["tests/bot", *DISPATCHER_TESTS]


# ---------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("case", case_params())
@pytest.mark.parametrize("old", bot_release_params())
def test_bot_from_an_earlier_release_updates_and_its_ci_passes(
    old: Release | None, case: str, template: Template, tmp_path: Path, mypy_cache: Path
) -> None:
    old = require(old)
    if case not in UPGRADE_CASES:
        pytest.fail(
            f"{CASE_ENV}={case!r} is no answer set of this test: one of {', '.join(UPGRADE_CASES)}"
        )
    bot = render_old_bot(template, old, UPGRADE_CASES[case], tmp_path / "bot")
    update = run(
        [*COPIER_UPDATE, "--vcs-ref", template.target],
        bot,
        timeout=UPDATE_TIMEOUT,
        env=child_env(),
    )
    assert_ok(update, "copier update")
    assert_clean_merge(bot)
    assert recorded_answers(bot)["_commit"] == template.target
    assert not module_level_routers(bot), update.stdout  # the migration converted them
    commit_all(bot, f"Update template to {template.target}")

    env = child_env()
    package = str(recorded_answers(bot)["package_name"])
    bandit = ["bandit", "-q", "-c", "pyproject.toml", "-r", "ecosystem_shared", package, "tests"]
    for what, cmd in [
        ("ruff check", [PYTHON, "-m", "ruff", "check", "--no-cache", "."]),
        ("ruff format --check", [PYTHON, "-m", "ruff", "format", "--check", "--no-cache", "."]),
        ("mypy", [PYTHON, "-m", "mypy", "--cache-dir", str(mypy_cache)]),
        ("bandit", [PYTHON, "-m", *bandit, "--severity-level", "medium"]),
        ("deptry", [PYTHON, "-m", "deptry", "."]),
    ]:
        assert_ok(run(cmd, bot, timeout=TOOL_TIMEOUT, env=env), f"{what} after the update")
    suite = run(
        [
            *(PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "slow or not slow"),
            *suite_paths(case, old),
        ],
        bot,
        timeout=SUITE_TIMEOUT,
        env=env,
    )
    assert_ok(suite, "the updated bot's suite", lines=80)
    assert re.search(r"\b\d+ passed\b", suite.stdout) and " deselected" not in suite.stdout
    assert git(bot, "status", "--porcelain") == "", "the checks left files behind"


# ruff here; mypy and the suites ran on the same updates above (and cost minutes per bot).
FLEET_CHECKS = " && ".join(
    f"{shlex.quote(PYTHON)} -m {tool}"
    for tool in ("ruff check --no-cache .", "ruff format --check --no-cache .")
)


@pytest.mark.parametrize("old", release_params())
def test_update_bots_takes_the_earlier_release_bots_to_updated(
    old: Release | None, template: Template, tmp_path: Path
) -> None:
    old = require(old)
    ecosystem = tmp_path / "eco"
    bots: list[Path] = []
    for case, answers in UPGRADE_CASES.items():
        bot = render_old_bot(template, old, answers, tmp_path / "bots" / case)
        bots.append(bot)
    slugs = [str(recorded_answers(bot)["bot_slug"]) for bot in bots]
    copy_template(
        ecosystem,
        {"project_type": "ecosystem", "bots": ",".join(slugs)},
        src=template.path,
        vcs_ref=template.target,
    )
    for bot, slug in zip(bots, slugs, strict=True):
        shutil.move(bot, ecosystem / slug)

    cmd = [str(ecosystem / "update-bots"), "--checks", FLEET_CHECKS]
    cmd += ["--version", template.target]
    result = run(cmd, ecosystem, timeout=FLEET_TIMEOUT, env=child_env(PYTHON=PYTHON))
    # The table: bot, from, to, result, details (columns two or more spaces apart).
    rows = {
        cells[0]: cells
        for line in result.stdout.splitlines()
        if (cells := re.split(r"\s{2,}", line.strip())) and cells[0] in slugs
    }
    assert result.returncode == 0, tail(result.stdout, 80)
    for slug in slugs:
        assert rows[slug][1:4] == [str(old.version), str(working_version()), "updated"], (
            f"{slug}: {rows[slug]}\n{tail(result.stdout, 80)}"
        )
        bot = ecosystem / slug
        assert recorded_answers(bot)["_commit"] == template.target
        assert git(bot, "branch", "--show-current").strip() == "main"
        assert not module_level_routers(bot)


# ------------------------------------------------------------------------ the machinery
def test_working_version_follows_the_changelog_and_the_migrations(tmp_path: Path) -> None:
    def version(changelog: str, copier_yml: str = "") -> str:
        (tmp_path / "CHANGELOG.md").write_text(changelog, encoding="utf-8")
        (tmp_path / "copier.yml").write_text(copier_yml, encoding="utf-8")
        return str(working_version(tmp_path))

    unreleased = "# C\n\n## Unreleased\n\n- change\n\n## 0.1.0\n\n- first\n"
    assert version(unreleased) == "0.2.0"
    released = "# C\n\n## Unreleased\n\n## 0.2.0 (2026-12-05)\n\n- change\n\n## 0.1.0\n"
    assert version(released) == "0.2.0"  # HEAD is the 0.2.0 release: 0.1.0 is the earlier one
    migrations = '_migrations:\n  - version: "1.0.0"\n    command: ["true"]\n'
    assert version(unreleased, migrations) == "1.0.0"


def test_the_releases_of_this_repository_are_found() -> None:
    """0.1.0 was released by 9d3bcf1; every release found is older than the working tree."""
    if is_shallow(REPO_ROOT):
        pytest.fail(SHALLOW, pytrace=False)
    found = {str(item.version): item.commit for item in earlier_releases()}
    assert found.get("0.1.0", "").startswith("9d3bcf1"), found
    assert all(Version(version) < working_version() for version in found)


def test_a_shallow_clone_is_refused_with_the_fix(tmp_path: Path) -> None:
    shallow = tmp_path / "shallow"
    subprocess.run(
        ["git", "clone", "--quiet", "--depth", "1", f"file://{REPO_ROOT}", str(shallow)],
        check=True,
        capture_output=True,
    )
    assert is_shallow(shallow) and earlier_releases(shallow) == []
    assert "git fetch --unshallow" in SHALLOW and "fetch-depth: 0" in SHALLOW


def test_a_chosen_answer_set_runs_whole_from_every_release(monkeypatch: pytest.MonkeyPatch) -> None:
    """One machine: every answer set from the oldest and the newest release, the media bot whole
    from the oldest; one CI job per answer set (UPGRADE_CASE): that answer set whole from every
    release; an unknown name fails."""
    if is_shallow(REPO_ROOT):
        pytest.fail(SHALLOW, pytrace=False)
    oldest, *newer = earlier_releases()
    every = [oldest, *newer]
    monkeypatch.delenv(CASE_ENV, raising=False)
    assert [param.values[0] for param in case_params()] == list(UPGRADE_CASES)
    assert [param.values[0] for param in bot_release_params()] == [oldest, *newer[-1:]]
    assert whole_suite("media-crm-local", oldest) and not whole_suite("text", oldest)
    assert not any(whole_suite(case, item) for case in UPGRADE_CASES for item in newer)
    monkeypatch.setenv(CASE_ENV, "text")
    assert [param.values[0] for param in case_params()] == ["text"]
    assert [param.values[0] for param in bot_release_params()] == every
    assert all(suite_paths("text", item) == [] for item in every)
    monkeypatch.setenv(CASE_ENV, "nope")
    assert [param.id for param in case_params()] == ["unknown-nope"]
