"""The host deployment's files, read without running them: the host-mode compose file and
Dockerfile (hadolint), the separate mode without a host service, and ``ecosystem_host``'s own
code under ruff and mypy (see tests/test_host.py for the host itself, as processes)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devkit.render import copy_template
from tests.deployment import ECOSYSTEM_ENV, check_jsonschema, fill_env_example, resolved
from tests.helpers import PYTHON, assert_ok, jinja_leftovers, run
from tests.test_host import BOTS, HOST, TOKENS, ecosystem, write_env  # noqa: F401 - a fixture


def _compose_files(eco: Path) -> Mapping[str, Any]:
    for slug in BOTS:
        write_env(eco / slug, BOT_TOKEN=TOKENS[slug])
    (eco / ".env").write_text(fill_env_example(eco / ".env.example", ECOSYSTEM_ENV), "utf-8")
    return resolved(eco)


@HOST
def test_host_compose_and_dockerfile(ecosystem: Path) -> None:  # noqa: F811 - the fixture
    assert not jinja_leftovers(ecosystem)
    check_jsonschema("vendor.compose-spec", [ecosystem / "compose.yaml"])
    model = _compose_files(ecosystem)
    services = model["services"]
    assert set(services) == {"postgres", "telegram-bot-api", "backup", "bots"}
    bots = services["bots"]
    env = ECOSYSTEM_ENV
    assert bots["environment"]["ALL_BOTS_DATABASE_URL"] == (
        f"postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@postgres:5432/"
        f"{env['POSTGRES_DB']}"
    )
    assert "env_file" not in bots, "one env_file would give every bot the same variables"
    mounts = {(m["source"], m["target"]) for m in bots["volumes"]}
    for slug in BOTS:
        assert (str(ecosystem / slug / ".env"), f"/srv/ecosystem/{slug}/.env") in mounts
    assert ("telegram-bot-api-data", "/var/lib/telegram-bot-api") in mounts
    assert ("bot-files", "/srv/bot-files") in mounts
    assert bots["read_only"] is True and bots["restart"] == "unless-stopped"
    assert set(bots["depends_on"]) == {"postgres", "telegram-bot-api"}
    assert bots["build"]["args"]["BOT_UID"] == "101"

    hadolint = [
        "hadolint",
        "--no-color",
        "--failure-threshold",
        "warning",
        "Dockerfile",
    ]
    assert_ok(run(hadolint, ecosystem, timeout=120), "hadolint")
    dockerfile = (ecosystem / "Dockerfile").read_text(encoding="utf-8")
    assert "--uses-ffmpeg" in dockerfile and "--conflicts" in dockerfile
    assert 'CMD ["python", "-m", "ecosystem_host", "--check"]' in dockerfile
    assert re.search(r"^USER \$\{BOT_UID\}", dockerfile, re.M)
    # Children do not compile their bot's code at each start (PYTHONDONTWRITEBYTECODE=1).
    compiled = dockerfile.index(f"RUN python -m compileall -q {' '.join(BOTS)}\n")
    assert compiled < dockerfile.index("USER ${BOT_UID}")
    ignore = (ecosystem / ".dockerignore").read_text(encoding="utf-8")
    assert "**/.env" in ignore.splitlines()


@HOST
def test_separate_mode_has_no_host_service(tmp_path: Path) -> None:
    eco = tmp_path / "eco"
    copy_template(eco, {"project_type": "ecosystem", "bots": "text-bot"})
    compose = (eco / "compose.yaml").read_text(encoding="utf-8")
    assert "./text-bot/compose.yaml" in compose and "ecosystem_host" not in compose
    assert not (eco / "Dockerfile").exists()
    assert (eco / "ecosystem_host" / "__main__.py").is_file(), "shipped in every ecosystem"


@HOST
def test_host_code_passes_ruff_and_mypy(ecosystem: Path) -> None:  # noqa: F811 - the fixture
    package = str(ecosystem / "ecosystem_host")
    ruff = [PYTHON, "-m", "ruff"]
    rules = ["--line-length", "100", "--target-version", "py311"]
    assert_ok(
        run(
            [*ruff, "check", "--select", "E,F,W,I,B,UP,RUF,SIM,BLE", *rules, package],
            ecosystem,
            timeout=120,
        ),
        "ruff check",
    )
    assert_ok(
        run([*ruff, "format", "--check", *rules, package], ecosystem, timeout=120),
        "ruff format --check",
    )
    mypy = [PYTHON, "-m", "mypy", "--strict", "--python-version", "3.11", "-p", "ecosystem_host"]
    assert_ok(run(mypy, ecosystem, timeout=300), "mypy")
