"""Render every answer combination and check the result like a user's CI would.

Each case is rendered once per session (tests of one case share an xdist group, so one worker
renders it). Checks, cheapest first: files and markers, ruff, mypy, bandit, deptry, compiling,
the workflows, then the generated bot's own test suite against the real PostgreSQL in
TEST_DATABASE_URL (not for the all-pairs sets, which are rendered, linted and compiled only).
"""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.allpairs import greedy_pairs, missing_pairs, pairs_of_factors
from tests.helpers import (
    ALL_CASES,
    COMBO_ENV,
    COMBOS,
    DISPATCHER_TESTS,
    PAIR_CASES,
    PAIR_FACTORS,
    PAIR_GROUP,
    PYTHON,
    REPO_ROOT,
    Case,
    assert_ok,
    case_levels,
    child_env,
    jinja_leftovers,
    project_files,
    read,
    recorded_answers,
    run,
    selected_cases,
    tail,
)
from tests.workflow_lint import workflow_problems


def case_params(cases: tuple[Case, ...]) -> list[Any]:
    return [
        pytest.param(case, id=case.id, marks=pytest.mark.xdist_group(case.id)) for case in cases
    ]


CASES = case_params(selected_cases())
# A case chosen alone with TEMPLATE_COMBO (one CI job per case) runs everything.
SUITE_CASES = case_params(tuple(case for case in selected_cases() if case.suite or len(CASES) == 1))
LINT_TIMEOUT = 300
BOT_SUITE_TIMEOUT = 900
# Cases whose render also runs the template-owned tests/shared (see suite_paths): the text bot
# whole; the media bot with CRM on the Local Bot API only what drives its dispatcher, because
# test_upgrade_path runs the same answer set's whole suite after updating it from the oldest
# release (each whole suite is 6-9 minutes of work on two cores).
FULL_SUITE_CASES = frozenset({"text-false-false"})
DISPATCHER_SUITE_CASES = frozenset({"media-true-true"})

REQUIRED_FILES = (
    "README.md",
    "pyproject.toml",
    "Dockerfile",
    ".dockerignore",
    ".gitignore",
    ".env.example",
    "compose.yaml",
    ".copier-answers.yml",
    "ecosystem_shared/__init__.py",
    "ecosystem_shared/config.py",
    "ecosystem_shared/db.py",
    "ecosystem_shared/analytics.py",
    "ecosystem_shared/notifications.py",
    "ecosystem_shared/digest.py",
    "ecosystem_shared/runtime.py",
    "tests/conftest.py",
    "{package}/__init__.py",
    "{package}/__main__.py",
    "{package}/settings.py",
    "{package}/handlers/start.py",
)


def package_of(project: Path) -> str:
    return str(recorded_answers(project)["package_name"])


@pytest.mark.parametrize("case", CASES)
def test_copier_records_the_answers(case: Case, project: Path) -> None:
    recorded = recorded_answers(project)
    assert recorded.get("_commit"), "_commit missing: `copier update` could not find the base"
    for key, value in case.answers.items():
        assert recorded[key] == value, f"answer {key} recorded as {recorded[key]!r}"


@pytest.mark.parametrize("case", CASES)
def test_no_jinja_leftovers(case: Case, project: Path) -> None:
    leftovers = jinja_leftovers(project)
    assert not leftovers, "unrendered Jinja:\n" + "\n".join(leftovers[:40])


@pytest.mark.parametrize("case", CASES)
def test_required_files_present(case: Case, project: Path) -> None:
    package = package_of(project)
    missing = [
        name.format(package=package)
        for name in REQUIRED_FILES
        if not (project / name.format(package=package)).is_file()
    ]
    assert not missing, f"missing files: {missing}"
    assert list((project / "tests").rglob("test_*.py")), "the bot has no tests"
    ignored = read(project, ".gitignore").splitlines()
    assert ".env" in [line.strip() for line in ignored], ".env must be git-ignored"


@pytest.mark.parametrize("case", CASES)
def test_files_follow_the_answers(case: Case, project: Path) -> None:
    package = package_of(project)
    crm, media = case.flag("crm"), case.mode == "media"
    external = case.flag("external_api")
    expected = {
        f"{package}/migrations/10-crm.sql": crm,
        f"{package}/handlers/crm.py": crm,
        f"{package}/services/crm.py": crm,
        "tests/bot/test_crm.py": crm,
        f"{package}/handlers/media.py": media,
        f"{package}/services/media_source.py": media,
        "tests/bot/test_media.py": media,
        "scripts/update_wb_routes.py": media,
        # The Wildberries client is template-owned and ships in every render (verbatim rule).
        f"{package}/services/media.py": False,
        f"{package}/services/wb_routes.py": False,
        "ecosystem_shared/wildberries/source.py": True,
        "tests/shared/test_wildberries.py": True,
        f"{package}/handlers/commands.py": not media,
        f"{package}/handlers/external.py": external,
        f"{package}/services/external_api.py": external,
        "tests/bot/test_external_api.py": external,
    }
    wrong = {
        name: ("missing" if wanted else "unexpected")
        for name, wanted in expected.items()
        if (project / name).is_file() != wanted
    }
    assert not wrong, f"files that do not follow the answers: {wrong}"


@pytest.mark.parametrize("case", CASES)
def test_deployment_files_follow_the_answers(case: Case, project: Path) -> None:
    compose = read(project, "compose.yaml")
    assert ("telegram-bot-api" in compose) == case.flag("local_bot_api"), (
        "compose.yaml must use the Local Bot API server exactly when local_bot_api is true"
    )
    dockerfile = read(project, "Dockerfile")
    assert ("ffmpeg" in dockerfile) == (case.mode == "media"), "ffmpeg belongs to media images"


@pytest.mark.parametrize("case", CASES)
def test_pyproject_is_valid_toml_with_the_answers(case: Case, project: Path) -> None:
    recorded = recorded_answers(project)
    meta = tomllib.loads(read(project, "pyproject.toml"))["project"]
    assert meta["name"] == recorded["bot_slug"]
    assert meta["description"] == recorded["description"]
    assert meta["authors"] == [{"name": recorded["author"]}]


@pytest.mark.parametrize("case", CASES)
def test_ruff_check_clean(case: Case, project: Path) -> None:
    cmd = [PYTHON, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."]
    result = run(cmd, project, timeout=LINT_TIMEOUT)
    assert_ok(result, "ruff check")


@pytest.mark.parametrize("case", CASES)
def test_ruff_format_clean(case: Case, project: Path) -> None:
    cmd = [PYTHON, "-m", "ruff", "format", "--check", "--diff", "--no-cache", "."]
    result = run(cmd, project, timeout=LINT_TIMEOUT)
    assert_ok(result, "ruff format --check")


@pytest.mark.parametrize("case", CASES)
def test_mypy_clean(case: Case, project: Path, mypy_cache: Path) -> None:
    # As the bot's CI runs it: the files of its pyproject.toml (shared code, the package, tests).
    cmd = [PYTHON, "-m", "mypy", "--cache-dir", str(mypy_cache)]
    result = run(cmd, project, timeout=LINT_TIMEOUT, env=child_env())
    assert_ok(result, "mypy")


def undocumented_settings(env_example: str, names: list[str]) -> list[str]:
    """Settings missing from ``.env.example``, or with no comment of their own above them.

    A comment documents the ``NAME=`` lines below it up to the next blank line; a section rule
    (``# ----- Title``) documents nothing.
    """
    documented: set[str] = set()
    commented = False
    for line in env_example.splitlines():
        text = line.strip()
        if not text:
            commented = False
        elif text.startswith("#"):
            commented = commented or not text.startswith("# ---")
        elif commented and "=" in text:
            documented.add(text.split("=", 1)[0].strip())
    return sorted(set(names) - documented)


@pytest.mark.parametrize("case", CASES)
def test_env_example_documents_every_setting(case: Case, project: Path) -> None:
    """Every field of the rendered bot's Settings is in .env.example, with a comment."""
    code = (
        f"import json; from {package_of(project)}.settings import Settings;"
        " print(json.dumps(sorted(Settings.model_fields)))"
    )
    result = run([PYTHON, "-c", code], project, timeout=LINT_TIMEOUT, env=child_env())
    assert_ok(result, "importing the settings")
    names = json.loads(result.stdout.strip().splitlines()[-1])
    assert "BOT_TOKEN" in names and "DATABASE_URL" in names
    missing = undocumented_settings(read(project, ".env.example"), names)
    assert not missing, f".env.example lacks (or has no comment for): {missing}"
    assert "_VARIABLES" not in read(project, ".env.example"), "a placeholder line was rendered"


def test_env_example_check_finds_what_is_missing() -> None:
    example = "# ---- Section\nA=1\n\n# The b.\nB=2\nC=3\n\nD=4\n"
    assert undocumented_settings(example, ["A", "B", "C", "D", "E"]) == ["A", "D", "E"]


# As the bot's CI workflow runs them (test_bot_ci_runs_the_scanners keeps the two in step).
BANDIT = "bandit -c pyproject.toml -r ecosystem_shared {package} tests --severity-level medium"
DEPTRY = "deptry ."


def scanner(command: str, project: Path) -> list[str]:
    program, *args = command.format(package=package_of(project)).split()
    return [PYTHON, "-m", program, *args]


@pytest.mark.parametrize("case", CASES)
def test_bandit_clean(case: Case, project: Path) -> None:
    result = run(scanner(BANDIT, project), project, timeout=LINT_TIMEOUT)
    assert_ok(result, "bandit (medium severity and up)")


@pytest.mark.parametrize("case", CASES)
def test_deptry_clean(case: Case, project: Path) -> None:
    result = run(scanner(DEPTRY, project), project, timeout=LINT_TIMEOUT)
    assert_ok(result, "deptry")


@pytest.mark.parametrize("case", CASES)
def test_bot_ci_runs_the_scanners(case: Case, project: Path) -> None:
    workflow = read(project, ".github/workflows/ci.yml")
    for command in (BANDIT, DEPTRY):
        assert f"run: {command.format(package=package_of(project))}\n" in workflow


@pytest.mark.parametrize("case", CASES)
def test_compiles_for_its_python(case: Case, project: Path, mypy_cache: Path) -> None:
    """Byte-compiles with this interpreter, and type-checks against the standard library of the
    image's Python (`python_version`; test_mypy_clean checks the 3.11 floor of requires-python)."""
    compiled = run([PYTHON, "-m", "compileall", "-q", "-f", "."], project, timeout=LINT_TIMEOUT)
    for cache in project.rglob("__pycache__"):
        shutil.rmtree(cache)
    assert_ok(compiled, "compileall")
    target = str(recorded_answers(project)["python_version"])
    if target != "3.11":
        cmd = [PYTHON, "-m", "mypy", "--cache-dir", str(mypy_cache), "--python-version", target]
        result = run(cmd, project, timeout=LINT_TIMEOUT, env=child_env())
        assert_ok(result, f"mypy --python-version {target}")


@pytest.mark.parametrize("case", CASES)
def test_workflows_clean(case: Case, project: Path) -> None:
    """Every workflow of the render (a glob: later ones too) and its Dependabot config pass
    actionlint, zizmor, check-jsonschema and the SHA-pin check."""
    assert (project / ".github" / "dependabot.yml").is_file()
    problems = workflow_problems(project)
    assert not problems, "\n\n".join(problems)


def suite_paths(case: Case) -> list[str]:
    """What of the bot's own suite to run for ``case``.

    ``tests/bot`` (the bot's handlers, which the answers shape) runs for every case. The
    template-owned ``tests/shared`` is the same file for file in every render
    (test_shared_part_is_the_template_verbatim): one whole run of it on a text bot here, one on
    a media bot in test_upgrade_path, and the tests that drive the media bot's own dispatcher
    here cover it; a single case chosen with TEMPLATE_COMBO (one CI job per case, the template's
    GitHub CI) always runs everything.
    """
    if case.id in FULL_SUITE_CASES or len(CASES) == 1:
        return ["tests"]
    if case.id in DISPATCHER_SUITE_CASES:
        return ["tests/bot", *DISPATCHER_TESTS]
    return ["tests/bot"]


# What the generated CI workflow adds to pyproject's addopts (`-m 'not slow'`): every test.
EVERY_TEST = ("-m", "slow or not slow")


@pytest.mark.parametrize("case", SUITE_CASES)
def test_generated_test_suite_passes(case: Case, project: Path) -> None:
    """The bot's own pytest, as its CI runs it: the slow process-level tests included
    (PostgreSQL from TEST_DATABASE_URL if set)."""
    cmd = [PYTHON, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *EVERY_TEST]
    result = run(cmd + suite_paths(case), project, timeout=BOT_SUITE_TIMEOUT, env=child_env())
    assert_ok(result, "the generated bot's pytest", lines=80)
    assert re.search(r"\b\d+ passed\b", result.stdout), f"no test ran:\n{tail(result.stdout)}"
    assert " deselected" not in result.stdout, f"tests left out:\n{tail(result.stdout)}"


@pytest.mark.parametrize("case", CASES)
def test_generated_ci_runs_the_slow_tests_and_the_default_run_skips_them(
    case: Case, project: Path
) -> None:
    """The bot's CI runs pytest with EVERY_TEST; a bare `pytest` (the daily loop) leaves the
    `slow` tests out, and some tests are marked so."""
    workflow = read(project, ".github/workflows/ci.yml")
    assert f'pytest {EVERY_TEST[0]} "{EVERY_TEST[1]}"' in workflow
    addopts = tomllib.loads(read(project, "pyproject.toml"))["tool"]["pytest"]["ini_options"]
    assert "-m 'not slow'" in addopts["addopts"]
    marked = [
        path.relative_to(project).as_posix()
        for path in (project / "tests").rglob("test_*.py")
        if "pytest.mark.slow" in path.read_text(encoding="utf-8")
    ]
    assert "tests/shared/test_digest_processes.py" in marked


SHARED_FOLDERS = ("ecosystem_shared", "tests/shared")


def shared_part(root: Path) -> dict[str, bytes]:
    """The template-owned code and tests under ``root`` (a render or template/), by path."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for folder in SHARED_FOLDERS
        for path in project_files(root / folder)
    }


@pytest.mark.parametrize("case", CASES)
def test_shared_part_is_the_template_verbatim(case: Case, project: Path) -> None:
    """Whatever the answers, ecosystem_shared/ and tests/shared/ are copied byte for byte: what
    lets test_generated_test_suite_passes run tests/shared once per mode instead of per case."""
    source = shared_part(REPO_ROOT / "template")
    assert "tests/shared/test_analytics.py" in source
    rendered = shared_part(project)
    names = source.keys() | rendered.keys()
    differing = sorted(name for name in names if source.get(name) != rendered.get(name))
    assert not differing, f"template-owned files that depend on the answers: {differing}"


# ---------------------------------------------------------------- the harness itself


def test_matrix_covers_every_combination() -> None:
    ids = [case.id for case in COMBOS]
    assert len(set(ids)) == 8
    assert "text-false-false" in ids
    assert "media-true-true" in ids
    assert len({case.id for case in ALL_CASES}) == len(ALL_CASES)


def test_every_pair_of_answers_is_rendered() -> None:
    """All-pairs coverage of ALL_CASES, computed from each case's answers (defaults applied)
    independently of the generator that chose PAIR_CASES."""
    assert missing_pairs(map(case_levels, ALL_CASES), PAIR_FACTORS) == []
    assert PAIR_CASES and all(not case.suite for case in PAIR_CASES)
    assert len({case.id for case in PAIR_CASES}) == len(PAIR_CASES)


def test_readme_states_the_coverage() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    suites = [case for case in ALL_CASES if case.suite]
    assert f"For these {len(suites)} the" in readme
    assert f"plus {len(PAIR_CASES)} more" in readme
    assert f"Each of those {len(ALL_CASES)} renders" in readme
    assert f"`TEMPLATE_COMBO=all-pairs`: the {len(PAIR_CASES)} all-pairs sets" in readme
    for factor in PAIR_FACTORS:
        assert f"`{factor}`" in readme or factor == "name", f"README.md omits {factor}"


def test_a_missing_pair_is_reported() -> None:
    without = [case for case in ALL_CASES if case.id != "external-api-en"]
    assert missing_pairs(map(case_levels, without), PAIR_FACTORS), "pairs only external-api-en has"
    factors = {"mode": ("text", "media"), "language": ("ru", "en")}
    rows = [{"mode": "text", "language": "ru"}, {"mode": "media", "language": "en"}]
    assert missing_pairs(rows, factors) == [
        (("language", "en"), ("mode", "text")),
        (("language", "ru"), ("mode", "media")),
    ]
    defaults = Case("defaults", {"mode": "media", "language": "en"})
    assert case_levels(defaults)["local_bot_api"] == "true", "copier.yml's default for media"
    assert case_levels(defaults)["python_version"] == "3.12"


def test_greedy_pairs_covers_every_pair() -> None:
    factors = {"a": ("0", "1", "2"), "b": ("x", "y"), "c": ("p", "q", "r"), "d": ("u", "v")}
    rows = greedy_pairs(factors, set())
    covered = {((f, row[f]), (g, row[g])) for row in rows for f in row for g in row if f < g}
    assert covered == pairs_of_factors(factors)
    assert len(rows) < 3 * 2 * 3 * 2, "all pairs, not all combinations"
    assert greedy_pairs(factors, pairs_of_factors(factors)) == []


def test_template_combo_selects_one_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(COMBO_ENV, "media-false-true")
    assert [case.id for case in selected_cases()] == ["media-false-true"]
    monkeypatch.setenv(COMBO_ENV, "video-true-true")
    with pytest.raises(ValueError, match="not a known case"):
        selected_cases()
    monkeypatch.setenv(COMBO_ENV, PAIR_GROUP)
    assert selected_cases() == PAIR_CASES
    monkeypatch.setenv(COMBO_ENV, PAIR_CASES[0].id)
    assert selected_cases() == PAIR_CASES[:1]
    monkeypatch.delenv(COMBO_ENV)
    assert selected_cases() == ALL_CASES


def test_leftover_detector(tmp_path: Path) -> None:
    workflow = tmp_path / ".github/workflows/ci.yml"
    workflow.parent.mkdir(parents=True)
    workflow.write_text("ref: ${{ github.ref }}\nrun: echo ${#ARR[@]}\n", encoding="utf-8")
    (tmp_path / "ok.py").write_text("x = {'a': {1: 2}}\n", encoding="utf-8")
    assert jinja_leftovers(tmp_path) == []
    (tmp_path / "a.py").write_text("A = 1\nNAME = '{{ bot_name }}'\n", encoding="utf-8")
    (tmp_path / "b.md").write_text("{% if crm %}\n{# note #}\n", encoding="utf-8")
    (tmp_path / "c.txt.jinja").write_text("plain\n", encoding="utf-8")
    assert jinja_leftovers(tmp_path) == [
        "a.py:2: NAME = '{{ bot_name }}'",
        "b.md:1: {% if crm %}",
        "b.md:2: {# note #}",
        "c.txt.jinja: unrendered file name",
    ]
