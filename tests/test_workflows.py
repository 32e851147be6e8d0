"""The CI workflows: the generated bot's and the template's own, against the workflow schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deployment import CASES, check_jsonschema, load_yaml
from tests.helpers import COMBOS, ODD_CASES, REPO_ROOT, Case, recorded_answers

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
    assert all("timeout-minutes" in job and "postgres" in job["services"] for job in jobs.values())
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
