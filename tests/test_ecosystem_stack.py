"""The Swarm stack (`deployment=swarm`): stack.yaml resolved by the docker CLI's own loader
(`docker stack config`, no engine needed) and checked against the Compose Specification, and
./deploy-stack's refusals. The stack on a real engine: tests/engine/test_stack.py.

The refusals run ./deploy-stack as a process with a stand-in `docker` first on PATH, which
answers `docker info` and `docker secret ls` as told and records every call: a refusal must
come before anything is built, pushed, created or deployed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from devkit.render import copy_template
from tests.deployment import TOOL_TIMEOUT, check_jsonschema, compose_env, fill_env_example
from tests.helpers import PYTHON, assert_ok, run

pytestmark = pytest.mark.xdist_group("ecosystem-stack")

ECO = "fleet"
TEXT_BOT, MEDIA_BOT = "echo-bot", "picture-bot"
TOKEN = "123456:AAE-token-abcdefghijklmnopqrstuvw"
SECRET_VALUES = ("s3cretPassw0rd", TOKEN, "0123456789abcdef" * 2, "apihash0123456789abcdef")
STACK_ENV = {
    "REGISTRY": "127.0.0.1:5000",
    "POSTGRES_USER": "eco_admin",
    "POSTGRES_DB": "eco_db",
    "TELEGRAM_API_ID": "123456",
    "ECHO_BOT_TAG": "abc",
    "PICTURE_BOT_TAG": "def",
}
STATEFUL = {"postgres", "redis", "caddy", "backup", "telegram-bot-api"}

STUB_DOCKER = f"""#!{sys.executable}
# Stand-in docker CLI of these tests: answers `info` and `secret ls` from the environment and
# records every call; anything else is a step a refusal must never reach.
import json, os, sys
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
if args[:1] == ["info"]:
    print(os.environ["STUB_SWARM"])
elif args[:2] == ["secret", "ls"]:
    print("\\n".join(os.environ["STUB_SECRETS"].split()))
else:
    sys.exit(99)
"""


@pytest.fixture(scope="module")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stack") / ECO
    copy_template(
        root,
        {"project_type": "ecosystem", "ecosystem_name": ECO, "bots": f"{TEXT_BOT},{MEDIA_BOT}",
         "deployment": "swarm", "webhook_domain": "bots.example.com", "with_local_bot_api": True},
    )  # fmt: skip
    answers = {
        TEXT_BOT: {"mode": "text", "local_bot_api": False},
        MEDIA_BOT: {"mode": "media", "local_bot_api": True},
    }
    for slug, bot_answers in answers.items():
        copy_template(root / slug, {"bot_slug": slug, **bot_answers})
        write_bot_env(root, slug, {})
    write_ecosystem_env(root)
    return root


def write_ecosystem_env(root: Path) -> None:
    values = {"REGISTRY": "127.0.0.1:5000", "TELEGRAM_API_ID": "123456"}
    text = fill_env_example(root / ".env.example", values)
    (root / ".env").write_text(text, encoding="utf-8")


def write_bot_env(root: Path, slug: str, values: Mapping[str, str]) -> None:
    # As the README's swarm steps say: no token in .env (it is a Docker secret).
    text = fill_env_example(root / slug / ".env.example", {"BOT_TOKEN": "", **values})
    (root / slug / ".env").write_text(text, encoding="utf-8")


def stack_config(root: Path, env: Mapping[str, str]) -> dict[str, Any]:
    cmd = ["docker", "stack", "config", "-c", "stack.yaml"]
    result = run(cmd, root, timeout=TOOL_TIMEOUT, env={**compose_env(), **env})
    assert_ok(result, "docker stack config")
    loaded = yaml.safe_load(result.stdout)
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def resolved_stack(stack_dir: Path) -> dict[str, Any]:
    return stack_config(stack_dir, STACK_ENV)


def test_stack_file_resolves_and_passes_the_compose_schema(
    stack_dir: Path, resolved_stack: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "resolved.yaml"
    out.write_text(yaml.safe_dump(resolved_stack), encoding="utf-8")
    check_jsonschema("vendor.compose-spec", [out])
    raw = yaml.safe_load((stack_dir / "stack.yaml").read_text(encoding="utf-8"))
    assert "include" not in raw
    assert not [name for name, service in raw["services"].items() if "build" in service]
    assert set(resolved_stack["services"]) == STATEFUL | {TEXT_BOT, MEDIA_BOT}


def test_bots_pull_from_the_registry_with_secrets_as_files(
    resolved_stack: dict[str, Any],
) -> None:
    services = resolved_stack["services"]
    for slug, tag in ((TEXT_BOT, "abc"), (MEDIA_BOT, "def")):
        bot = services[slug]
        assert bot["image"] == f"127.0.0.1:5000/{ECO}/{slug}:{tag}"
        env = bot["environment"]
        assert env["BOT_TOKEN_FILE"] == "/run/secrets/bot_token"
        assert env["WEBHOOK_SECRET_FILE"] == "/run/secrets/webhook_secret"
        assert env["DATABASE_PASSWORD_FILE"] == "/run/secrets/postgres_password"
        assert env["DATABASE_URL"] == "postgresql://eco_admin@postgres:5432/eco_db"  # no password
        targets = {s["source"]: s.get("target", s["source"]) for s in bot["secrets"]}
        assert targets == {
            "postgres_password": "postgres_password",
            f"{slug}_bot_token": "bot_token",
            f"{slug}_webhook_secret": "webhook_secret",
        }
        deploy = bot["deploy"]
        assert deploy["endpoint_mode"] == "dnsrr"  # the proxy sees every replica's address
        # Unset (a bare `docker stack deploy`): one replica, stop-first, anywhere.
        assert deploy["replicas"] == 1
        assert deploy["update_config"]["order"] == "stop-first"
        assert deploy["placement"]["constraints"] == ["node.platform.os == linux"]
        assert bot["read_only"] is True and bot["cap_drop"] == ["ALL"]
    for name, secret in resolved_stack["secrets"].items():
        assert secret["external"] is True, name
        assert secret["name"].startswith(f"{ECO}_")
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"].startswith("/run/")
    assert services["backup"]["environment"]["PGPASSWORD_FILE"].startswith("/run/secrets/")
    api_env = services["telegram-bot-api"]["environment"]
    assert api_env["TELEGRAM_API_HASH_FILE"] == "/run/secrets/telegram_api_hash"
    for service in services.values():
        assert not {"POSTGRES_PASSWORD", "PGPASSWORD", "TELEGRAM_API_HASH"} & set(
            service.get("environment") or {}
        )


def test_every_service_is_reached_by_dns_without_virtual_ips(
    resolved_stack: dict[str, Any],
) -> None:
    """Virtual IPs need IPVS in each node's kernel (absent on the test engine's): dnsrr."""
    services = resolved_stack["services"]
    assert {name: s["deploy"].get("endpoint_mode") for name, s in services.items()} == {
        name: "dnsrr" for name in services
    }
    # The routing mesh needs a virtual IP too: Caddy publishes on its own node.
    ports = {(p["target"], p["published"], p["mode"]) for p in services["caddy"]["ports"]}
    assert ports == {(80, 80, "host"), (443, 443, "host")}
    assert [name for name, s in services.items() if "ports" in s] == ["caddy"]


def test_state_is_pinned_to_the_data_node(resolved_stack: dict[str, Any]) -> None:
    services = resolved_stack["services"]
    for name in STATEFUL:
        deploy = services[name]["deploy"]
        assert deploy["placement"]["constraints"] == [f"node.labels.{ECO}.data == true"], name
        assert deploy["replicas"] == 1
        assert deploy["update_config"]["order"] == "stop-first", name
    assert "postgres-data" in {v.get("source") for v in services["postgres"]["volumes"]}
    backups = [v for v in services["backup"]["volumes"] if v.get("target") == "/backups"]
    assert backups and Path(backups[0]["source"]).is_absolute()


def test_configs_carry_every_file_the_services_read(
    stack_dir: Path, resolved_stack: dict[str, Any]
) -> None:
    """Init SQL, scripts and the Caddyfile reach any node as configs named by their digest."""
    configs = resolved_stack["configs"]
    files = {Path(c["file"]).relative_to(stack_dir).as_posix() for c in configs.values()}
    init = {p.relative_to(stack_dir).as_posix() for p in (stack_dir / "postgres/init").iterdir()}
    assert init <= files
    assert {"scripts/backup.sh", "scripts/restore.sh", "caddy/Caddyfile"} <= files
    assert all(c["name"].endswith("_1") for c in configs.values())  # CONFIG_VERSION unset
    mounted = {
        c["target"] for s in resolved_stack["services"].values() for c in s.get("configs", [])
    }
    assert {f"/docker-entrypoint-initdb.d/{Path(f).name}" for f in init} <= mounted
    with_version = stack_config(stack_dir, {**STACK_ENV, "CONFIG_VERSION": "0a1b2c"})
    assert all(c["name"].endswith("_0a1b2c") for c in with_version["configs"].values())


def test_deploy_variables_set_replicas_order_and_placement(stack_dir: Path) -> None:
    env = {**STACK_ENV, "ECHO_BOT_REPLICAS": "3", "ECHO_BOT_UPDATE_ORDER": "start-first",
           "PICTURE_BOT_CONSTRAINT": f"node.labels.{ECO}.data == true"}  # fmt: skip
    services = stack_config(stack_dir, env)["services"]
    deploy = services[TEXT_BOT]["deploy"]
    assert deploy["replicas"] == 3
    assert deploy["update_config"]["order"] == deploy["rollback_config"]["order"] == "start-first"
    assert deploy["update_config"]["failure_action"] == "rollback"
    media = services[MEDIA_BOT]["deploy"]["placement"]["constraints"]
    assert media == [f"node.labels.{ECO}.data == true"]


def test_no_secret_value_in_any_file_the_stack_reads(stack_dir: Path) -> None:
    text = (stack_dir / "stack.yaml").read_text(encoding="utf-8")
    assert not [value for value in SECRET_VALUES if value in text]


# ------------------------------------------------------------------------ deploy-stack
def test_deploy_stack_code_passes_linters(stack_dir: Path) -> None:
    rules = ["--line-length", "100", "--target-version", "py311"]
    select = ["--select", "E,F,W,I,B,UP,RUF,SIM,BLE"]
    script = "deploy_stack.py"  # run in tools/, beside update_bots.py it imports
    # update_bots.py imports the answers-file reader of ecosystem_host/, one level up.
    env = {**os.environ, "MYPYPATH": str(stack_dir)}
    for cmd in (
        [PYTHON, "-m", "ruff", "check", "--no-cache", *rules, *select, script],
        [PYTHON, "-m", "ruff", "format", "--check", "--no-cache", *rules, script],
        [PYTHON, "-m", "mypy", "--strict", "--no-incremental", script],
    ):
        result = run(cmd, stack_dir / "tools", timeout=TOOL_TIMEOUT, env=env)
        assert_ok(result, " ".join(cmd[1:4]))
    shellcheck = shutil.which("shellcheck")
    if shellcheck:
        assert_ok(run([shellcheck, "deploy-stack"], stack_dir, timeout=TOOL_TIMEOUT), "shellcheck")
    assert (stack_dir / "deploy-stack").stat().st_mode & 0o111


def all_secrets(slugs: tuple[str, ...] = (TEXT_BOT, MEDIA_BOT)) -> list[str]:
    names = [f"{ECO}_postgres_password", f"{ECO}_telegram_api_hash"]
    return names + [f"{ECO}_{slug}_bot_token" for slug in slugs]


def deploy_stack(
    root: Path, tmp_path: Path, *, swarm: str = "active true", secrets: list[str] | None = None
) -> tuple[int, str, list[list[str]]]:
    """./deploy-stack --check against the stand-in docker: status, output, docker calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stub = bin_dir / "docker"
    stub.write_text(STUB_DOCKER, encoding="utf-8")
    stub.chmod(0o755)
    log = tmp_path / "docker-calls.jsonl"
    log.write_text("")
    env = {
        **compose_env(),
        "PATH": f"{bin_dir}:{compose_env()['PATH']}",
        "PYTHON": PYTHON,
        "STUB_LOG": str(log),
        "STUB_SWARM": swarm,
        "STUB_SECRETS": " ".join(all_secrets() if secrets is None else secrets),
    }
    result = run([str(root / "deploy-stack"), "--check"], root, timeout=TOOL_TIMEOUT, env=env)
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return result.returncode, result.stdout, calls


def assert_refused_untouched(status: int, calls: list[list[str]]) -> None:
    assert status == 1
    assert all(call[:1] == ["info"] or call[:2] == ["secret", "ls"] for call in calls), calls


def test_deploy_stack_check_passes_when_everything_is_ready(
    stack_dir: Path, tmp_path: Path
) -> None:
    status, out, _ = deploy_stack(stack_dir, tmp_path)
    assert status == 0, out
    assert "every check passed" in out


@pytest.mark.parametrize(
    ("swarm", "expected"),
    [
        ("inactive false", "this Docker engine is not in a swarm (state: inactive), not a Swarm"),
        ("active false", "this Docker engine is a worker, not a Swarm manager"),
    ],
)
def test_deploy_stack_refuses_without_a_manager(
    stack_dir: Path, tmp_path: Path, swarm: str, expected: str
) -> None:
    status, out, calls = deploy_stack(stack_dir, tmp_path, swarm=swarm)
    assert_refused_untouched(status, calls)
    assert f"deploy-stack: refused: {expected}" in out
    assert "docker swarm init" in out
    assert calls == [["info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}"]]


def test_deploy_stack_names_each_missing_secret_with_its_command(
    stack_dir: Path, tmp_path: Path
) -> None:
    have = [name for name in all_secrets() if "bot_token" not in name]
    status, out, calls = deploy_stack(stack_dir, tmp_path, secrets=have)
    assert_refused_untouched(status, calls)
    for slug in (TEXT_BOT, MEDIA_BOT):
        name = f"{ECO}_{slug}_bot_token"
        assert (
            f"deploy-stack: refused: secret {name} is missing ({slug}'s token from @BotFather):"
            f" printf '%s' '<value>' | docker secret create {name} -"
        ) in out
    assert out.count("refused:") == 2, out


def test_deploy_stack_refuses_a_polling_bot_with_replicas(stack_dir: Path, tmp_path: Path) -> None:
    write_bot_env(stack_dir, TEXT_BOT, {"REPLICAS": "3"})
    try:
        status, out, calls = deploy_stack(stack_dir, tmp_path)
    finally:
        write_bot_env(stack_dir, TEXT_BOT, {})
    assert_refused_untouched(status, calls)
    assert (
        f"deploy-stack: refused: {TEXT_BOT}: REPLICAS=3 while the bot polls: Telegram serves one"
        " getUpdates per token (a second poller gets 409 Conflict)"
    ) in out


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"BOT_TOKEN": TOKEN}, ".env sets BOT_TOKEN, which `docker service inspect` would show"),
        ({"REPLICAS": "two"}, "REPLICAS must be a whole number >= 1 (got 'two')"),
        ({"REPLICAS": "0"}, "REPLICAS must be a whole number >= 1 (got '0')"),
    ],
    ids=["plain-token", "replicas-word", "replicas-zero"],
)
def test_deploy_stack_refuses_bad_bot_settings(
    stack_dir: Path, tmp_path: Path, values: dict[str, str], expected: str
) -> None:
    write_bot_env(stack_dir, MEDIA_BOT, values)
    try:
        status, out, calls = deploy_stack(stack_dir, tmp_path)
    finally:
        write_bot_env(stack_dir, MEDIA_BOT, {})
    assert_refused_untouched(status, calls)
    assert f"deploy-stack: refused: {MEDIA_BOT}: {expected}" in out
    assert TOKEN not in out


def test_deploy_stack_refuses_webhook_mode_without_a_proxy(tmp_path: Path) -> None:
    root = tmp_path / "noproxy"
    copy_template(
        root,
        {"project_type": "ecosystem", "ecosystem_name": ECO, "bots": TEXT_BOT,
         "deployment": "swarm", "with_local_bot_api": False},
    )  # fmt: skip
    copy_template(root / TEXT_BOT, {"bot_slug": TEXT_BOT, "mode": "text"})
    write_bot_env(root, TEXT_BOT, {"RUN_MODE": "webhook", "REPLICAS": "2"})
    write_ecosystem_env(root)
    secrets = [f"{ECO}_postgres_password", f"{ECO}_{TEXT_BOT}_bot_token"]
    status, out, calls = deploy_stack(root, tmp_path, secrets=secrets)
    assert_refused_untouched(status, calls)
    assert "RUN_MODE=webhook, but this ecosystem has no reverse proxy" in out
    assert "REPLICAS=2 while the bot polls" not in out  # webhook bots may have replicas


@pytest.mark.parametrize("name", ["REGISTRY", "POSTGRES_USER", "POSTGRES_DB", "TELEGRAM_API_ID"])
def test_deploy_stack_refuses_a_missing_variable(
    stack_dir: Path, tmp_path: Path, name: str
) -> None:
    """`docker stack deploy` would leave it empty (it has no `${VAR:?}` stop): refused here."""
    env_file = stack_dir / ".env"
    kept = env_file.read_text(encoding="utf-8")
    lines = [line for line in kept.splitlines() if not line.startswith(f"{name}=")]
    env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        status, out, calls = deploy_stack(stack_dir, tmp_path)
    finally:
        env_file.write_text(kept, encoding="utf-8")
    assert_refused_untouched(status, calls)
    assert f"deploy-stack: refused: {name} is not set in .env (" in out
    assert out.count("refused:") == 1, out


def test_a_bare_stack_deploy_would_not_stop_on_a_missing_variable(stack_dir: Path) -> None:
    """Why deploy-stack checks the variables: the docker CLI's loader leaves them empty."""
    env = {k: v for k, v in STACK_ENV.items() if k != "REGISTRY"}
    image = stack_config(stack_dir, env)["services"][TEXT_BOT]["image"]
    assert image == f"/{ECO}/{TEXT_BOT}:abc"
