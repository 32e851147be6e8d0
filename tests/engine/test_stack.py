"""The ecosystem as a Docker Swarm stack on a real engine (single-node swarm, local registry).

One stack for the module, deployed by ./deploy-stack as the README tells: a webhook bot with
three replicas behind Caddy (echo-bot, with Redis) and a polling bot on the Local Bot API
server (picture-bot, placed on the data node), PostgreSQL, the backup service. The fake Bot
API is both the Local Bot API server and Telegram, which POSTs the webhook bot's updates to
the proxy. The tests run in the order an operator meets them; the last removes the stack.
The swarm is created for these tests (and left again) when the engine is not in one.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import secrets
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.ecosystem import BotSpec, wait_for
from tests.engine.stack import Stack, local_registry
from tests.engine.standins import (
    CADDY,
    FAKE_BOT_API,
    POSTGRES,
    REDIS,
    StandIns,
    build_stack_standins,
    build_standins,
    docker,
)
from tests.engine.test_ecosystem import MEDIA, TEXT, docker_engine_available

# One xdist worker runs every engine test (the module fixtures below hold one swarm and one
# stack for all of them; tests/test_xdist_groups.py guards the grouping).
pytestmark = [pytest.mark.engine, pytest.mark.xdist_group("engine")]

# The bots of tests/engine/test_ecosystem.py (same answers: their image layers are reused).
HOOK = BotSpec(TEXT.slug, TEXT.answers)
POLL = BotSpec(MEDIA.slug, MEDIA.answers)
REPLICAS = 3
_users = itertools.count(8_000_001)


@pytest.fixture(scope="module")
def swarm() -> Iterator[str]:
    """This engine as a Swarm manager: its node id. Joined for the tests only if it was not."""
    problem = docker_engine_available()
    if problem:
        pytest.fail(f"{problem}. Deselect engine tests with -m 'not engine'.", pytrace=False)
    # One swarm user at a time on this engine: a second pytest run on the same engine (another
    # checkout) would otherwise find the swarm this one leaves at teardown.
    with open(Path(tempfile.gettempdir()) / "template-tests-swarm.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield from _swarm_node()


def _swarm_node() -> Iterator[str]:
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}")
    created = state.split()[0] == "inactive"
    bridges = docker("network", "ls", "-q", "--filter", "name=^docker_gwbridge$").strip()
    if created:
        docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    elif state.split() != ["active", "true"]:
        pytest.fail(f"this engine is in a swarm but not a manager ({state.strip()})")
    try:
        yield docker("info", "--format", "{{.Swarm.NodeID}}").strip()
    finally:
        if created:
            docker("swarm", "leave", "--force")
            if not bridges:  # the bridge `swarm init` made stays behind otherwise
                docker("network", "rm", "docker_gwbridge")


@pytest.fixture(scope="module")
def stack(swarm: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("swarm")
    name = f"e2ew{secrets.token_hex(3)}"
    with local_registry(root) as registry:
        eco = Stack(root / name, (HOOK, POLL), name, registry)
        webhook = {
            "RUN_MODE": "webhook",
            "WEBHOOK_BASE_URL": "http://caddy",
            "WEBHOOK_SECRET": "",  # a Docker secret, created by ./deploy-stack
            "REDIS_URL": "redis://redis:6379/0",
            "REPLICAS": str(REPLICAS),
        }
        pushed = push_standins(registry)
        eco.render({HOOK.slug: webhook}, {
            "POSTGRES_IMAGE": pushed[POSTGRES],
            "TELEGRAM_BOT_API_IMAGE": pushed[FAKE_BOT_API],
            "REDIS_IMAGE": pushed[REDIS],
            "CADDY_IMAGE": pushed[CADDY],
            "PYTHON_IMAGE": StandIns().python,  # a build argument: stays a local image
        })  # fmt: skip
        label = f"{name}.data=true"
        docker("node", "update", "--label-add", label, swarm)
        try:
            yield eco
        finally:
            try:
                eco.remove()
            finally:
                cleanup(eco, swarm, label)


def push_standins(registry: str) -> dict[str, str]:
    """The stand-ins, built as the compose engine tests build them, pushed to ``registry``."""
    with_shared = Path(__file__).resolve().parents[2] / "template" / "ecosystem_shared"
    build_standins(with_shared, StandIns())
    build_stack_standins()
    pushed = {}
    for image in (POSTGRES, FAKE_BOT_API, REDIS, CADDY):
        target = f"{registry}/{image}"
        docker("tag", image, target)
        docker("push", target, timeout=900)
        pushed[image] = target
    return pushed


def cleanup(eco: Stack, node: str, label: str) -> None:
    """What these tests created: volumes, secrets, the node label, image tags."""
    namespace = f"label=com.docker.stack.namespace={eco.name}"

    def volumes_removed() -> bool:
        for volume in docker("volume", "ls", "-q", "--filter", namespace).split():
            subprocess.run(["docker", "volume", "rm", volume], capture_output=True, check=False)
        return not docker("volume", "ls", "-q", "--filter", namespace).strip()

    try:
        wait_for(f"{eco.name}'s volumes to be removed", volumes_removed, 60)
    except AssertionError as error:  # the rest of the cleanup still runs
        print(f"cleanup: {error}")
    names = docker("secret", "ls", "--format", "{{.Name}}").split()
    mine = [n for n in names if n.startswith(f"{eco.name}_")]
    if mine:
        subprocess.run(["docker", "secret", "rm", *mine], capture_output=True, check=False)
    docker("node", "update", "--label-rm", label.split("=")[0], node)
    tags = docker("images", "--format", "{{.Repository}}:{{.Tag}}").split()
    ours = [t for t in tags if t.startswith(f"{eco.registry}/")]
    if ours:
        subprocess.run(["docker", "rmi", *ours], capture_output=True, check=False)


def test_deploy_refuses_while_a_secret_is_missing(stack: Stack) -> None:
    """On the real engine: the tokens and the database password are not created yet."""
    result = stack.deploy_stack()
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"secret {stack.name}_postgres_password is missing" in result.stderr
    assert f"secret {stack.name}_{HOOK.slug}_bot_token is missing" in result.stderr
    assert not stack.desired_and_running()  # nothing deployed


def test_the_stack_deploys_and_every_service_is_healthy(stack: Stack) -> None:
    stack.create_secrets()
    result = stack.deploy_stack()
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"created secret {stack.name}_{HOOK.slug}_webhook_secret (random)" in result.stdout
    try:
        stack.wait_converged()
    except AssertionError:
        print({name: stack.logs(name)[-3000:] for name in stack.desired_and_running()})
        raise
    replicas = stack.desired_and_running()
    assert replicas[HOOK.slug] == (REPLICAS, REPLICAS)
    assert replicas[POLL.slug] == (1, 1)
    assert set(replicas) == {"postgres", "telegram-bot-api", "redis", "caddy", "backup",
                             HOOK.slug, POLL.slug}  # fmt: skip
    # The images came from the local registry, the bot's under its content tag.
    hook = json.loads(docker("service", "inspect", stack.service(HOOK.slug)))[0]
    image = hook["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    assert image.startswith(f"{stack.registry}/{stack.name}/{HOOK.slug}:"), image


def start_all(stack: Stack, bot: BotSpec, users: list[int], pause: float = 0.0) -> None:
    for user in users:
        stack.send(bot, "/start", user)
        time.sleep(pause)


def wait_answered(stack: Stack, bot: BotSpec, users: list[int], timeout: float = 120) -> None:
    wanted = set(users)
    wait_for(f"{bot.slug} to answer {len(users)} users",
             lambda: set(stack.replies(bot, wanted)) == wanted, timeout)  # fmt: skip


def stored(stack: Stack, users: list[int]) -> int:
    ids = ",".join(map(str, users))
    return stack.scalar(
        "SELECT count(*) FROM shared.analytics_events "
        f"WHERE telegram_id IN ({ids}) AND event_type = 'user_start'"  # nosec B608: ints
    )


def test_start_through_the_proxy_reaches_the_replicas_and_lands_once(stack: Stack) -> None:
    users = [next(_users) for _ in range(30)]
    start_all(stack, HOOK, users)
    wait_answered(stack, HOOK, users)
    wait_for("30 events in PostgreSQL", lambda: stored(stack, users) == len(users), 60)
    time.sleep(2)  # a late duplicate would show now
    assert set(stack.replies(HOOK, set(users)).values()) == {1}
    assert stored(stack, users) == len(users)
    # The proxy spread them over the replicas: each holds Caddy's kept-alive connection to its
    # webhook port (their health check reads a file, nothing else connects there).
    served = [proxy_connections(c["Id"]) for c in stack.containers(HOOK.slug)]
    assert len(served) == REPLICAS and all(served), served
    # The polling bot, on the Local Bot API server.
    polled = [next(_users) for _ in range(3)]
    start_all(stack, POLL, polled)
    wait_answered(stack, POLL, polled)


def proxy_connections(container: str) -> int:
    """Established TCP connections to the container's webhook port 8080 (/proc/net/tcp)."""
    table = docker("exec", container, "cat", "/proc/net/tcp")
    rows = [line.split() for line in table.splitlines()[1:]]
    return sum(1 for row in rows if row[1].endswith(":1F90") and row[3] == "01")


class Traffic:
    """/start from a new user every ``pause`` seconds until stopped: the users sent."""

    def __init__(self, stack: Stack, bot: BotSpec, pause: float = 0.1) -> None:
        self.users: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(stack, bot, pause), daemon=True)

    def _run(self, stack: Stack, bot: BotSpec, pause: float) -> None:
        while not self._stop.is_set():
            user = next(_users)
            stack.send(bot, "/start", user)
            self.users.append(user)
            time.sleep(pause)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def update_state(stack: Stack, service: str) -> str:
    status = docker("service", "inspect", stack.service(service), "--format",
                    "{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}")  # fmt: skip
    return status.strip()


def test_rolling_update_under_traffic_loses_nothing_and_answers_once(stack: Stack) -> None:
    before = {c["Id"] for c in stack.containers(HOOK.slug)}
    # A new version of the bot: its code changes, so its image (and tag) does.
    init = stack.root / HOOK.slug / HOOK.package / "__init__.py"
    init.write_text(init.read_text() + "\n# version 2\n")
    with Traffic(stack, HOOK) as traffic:
        time.sleep(1)
        result = stack.deploy_stack()
        assert result.returncode == 0, result.stdout + result.stderr
        wait_for("the rolling update", lambda: update_state(stack, HOOK.slug) == "completed", 600)
        stack.wait_converged()
        time.sleep(1)
    after = {c["Id"] for c in stack.containers(HOOK.slug)}
    assert not before & after and len(after) == REPLICAS  # every replica replaced
    users = traffic.users
    assert len(users) > 50, len(users)
    wait_answered(stack, HOOK, users)
    try:
        wait_for("every event stored", lambda: stored(stack, users) == len(users), 120)
    except AssertionError as timeout:  # lost or doubled: say which
        twice = {u: n for u, n in stack.replies(HOOK, set(users)).items() if n != 1}
        raise AssertionError(f"{stored(stack, users)} of {len(users)} events stored; "
                             f"answered other than once: {twice}") from timeout  # fmt: skip
    time.sleep(3)
    counts = stack.replies(HOOK, set(users))
    assert {u: n for u, n in counts.items() if n != 1} == {}
    assert stored(stack, users) == len(users)


def test_a_killed_replica_is_replaced_and_traffic_continues(stack: Stack) -> None:
    victim = stack.containers(HOOK.slug)[0]["Id"]
    with Traffic(stack, HOOK) as traffic:
        time.sleep(1)
        docker("kill", victim)

        def replaced() -> bool:
            ids = {c["Id"] for c in stack.containers(HOOK.slug)}
            return victim not in ids and stack.converged()

        wait_for("Swarm to replace the killed replica", replaced, 180)
        time.sleep(1)
    assert len(traffic.users) > 10
    wait_answered(stack, HOOK, traffic.users)


def test_secrets_are_not_in_service_or_container_inspect(stack: Stack) -> None:
    values = dict(stack.secret_values)
    webhook_secret = stack.exec(HOOK.slug, "cat", "/run/secrets/webhook_secret").strip()
    assert len(webhook_secret) == 64
    values["webhook secret"] = webhook_secret
    services = docker("service", "ls", "-q", "--filter",
                      f"label=com.docker.stack.namespace={stack.name}").split()  # fmt: skip
    inspected = docker("service", "inspect", *services)
    containers = stack.containers()
    environments = json.dumps([c["Config"]["Env"] for c in containers])
    texts = {"docker service inspect": inspected, "containers": json.dumps(containers)}
    for where, text in {**texts, "environments": environments}.items():
        leaked = [name for name, value in values.items() if value in text]
        assert not leaked, (where, leaked)
    # ... while the bots do have them: the token reached the fake Bot API (answers above).
    token_file = stack.exec(HOOK.slug, "cat", "/run/secrets/bot_token").strip()
    assert token_file == HOOK.token


def test_stack_rm_leaves_the_database_volume(stack: Stack) -> None:
    users = stack.scalar("SELECT count(*) FROM shared.users")
    assert users > 0
    stack.remove()
    volume = f"{stack.name}_postgres-data"
    assert docker("volume", "inspect", "--format", "{{.Name}}", volume).strip() == volume
