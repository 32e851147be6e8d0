"""A rendered ``deployment=swarm`` ecosystem on a real single-node Swarm, driven by ./deploy-stack.

:class:`Stack` renders the ecosystem and its bots from this checkout, writes the ``.env`` files
and Docker secrets the ecosystem README asks for, and deploys with ``./deploy-stack``: the bots'
images are built and pushed to a local registry (Debian's ``docker-registry`` on a loopback
port), the stand-in images are pushed there too and named through the image variables.

The only test-specific stack file, ``stack.e2e.yaml``, is stack.yaml with four changes: Caddy
publishes no port and serves plain http on :80 (``caddy/Caddyfile.e2e``: the product's routes
under another site address; certificates need the internet), the fake Bot API accepts that
http webhook URL, health checks run every 2 s, and updates are monitored for 5 s instead of 30.
The tests reach the fake Bot API's control port at its container's address on the host's
``docker_gwbridge`` network (a container of these tests; nothing is published).
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from devkit.render import copy_template
from tests.deployment import fill_env_example
from tests.engine.ecosystem import BotSpec, wait_for
from tests.engine.standins import docker

E2E_STACK = "stack.e2e.yaml"
WEBHOOK_DOMAIN = "bots.example.com"
FAST_HEALTH = {"interval": "2s", "timeout": "10s", "retries": 3, "start_period": "120s"}
BOT_HEALTH = {"test": ["CMD", "python", "-m", "ecosystem_shared.health"], **FAST_HEALTH}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def local_registry(root: Path) -> Iterator[str]:
    """Debian's docker-registry on a loopback port (dockerd allows plain http to 127.0.0.0/8)."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError("docker-registry is missing: apt-get install docker-registry")
    port = free_port()
    config = root / "registry.yml"
    config.write_text(json.dumps({
        "version": 0.1,
        "storage": {"filesystem": {"rootdirectory": str(root / "registry-data")},
                    "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }))  # fmt: skip
    log = (root / "registry.log").open("wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log)
    address = f"127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(f"http://{address}/v2/", timeout=2):  # nosec B310
                return True
        except OSError:
            return process.poll() is not None and _raise(root / "registry.log")

    try:
        wait_for("the local registry", answers, 30)
        yield address
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _raise(log: Path) -> bool:
    raise RuntimeError(f"docker-registry exited:\n{log.read_text()[-2000:]}")


class Stack:
    def __init__(self, root: Path, bots: Sequence[BotSpec], name: str, registry: str) -> None:
        self.root = root
        self.bots = list(bots)
        self.name = name
        self.registry = registry
        self.db_user, self.db_name = "eco_admin", "eco"
        self.secret_values: dict[str, str] = {}
        self._api: str | None = None

    # ------------------------------------------------------------------ setup
    def render(self, bot_env: Mapping[str, Mapping[str, str]], images: Mapping[str, str]) -> None:
        copy_template(
            self.root,
            {"project_type": "ecosystem", "ecosystem_name": self.name,
             "bots": ",".join(b.slug for b in self.bots), "with_local_bot_api": True,
             "deployment": "swarm", "webhook_domain": WEBHOOK_DOMAIN, "with_redis": True},
        )  # fmt: skip
        for bot in self.bots:
            copy_template(self.root / bot.slug, {"bot_slug": bot.slug, "package_name": bot.package,
                                                 **bot.answers})  # fmt: skip
            values = {
                "BOT_TOKEN": "",  # a Docker secret (the README's swarm steps)
                "TELEGRAM_API_BASE_URL": "http://telegram-bot-api:8081",
                "ANALYTICS_FLUSH_SECONDS": "0.2",
                **bot_env.get(bot.slug, {}),
            }
            text = fill_env_example(self.root / bot.slug / ".env.example", values)
            (self.root / bot.slug / ".env").write_text(text)
        env = {
            "REGISTRY": self.registry,
            "POSTGRES_USER": self.db_user,
            "POSTGRES_DB": self.db_name,
            "TELEGRAM_API_ID": "12345",
            **images,
        }
        text = fill_env_example(self.root / ".env.example", env)
        (self.root / ".env").write_text(text + "".join(f"{k}={v}\n" for k, v in images.items()))
        backups = self.root / "backups"
        backups.mkdir(exist_ok=True)
        shutil.chown(backups, 70, 70)
        self._write_e2e_files()

    def _write_e2e_files(self) -> None:
        caddyfile = (self.root / "caddy" / "Caddyfile").read_text()
        site = re.compile(rf"^{re.escape(WEBHOOK_DOMAIN)} \{{$", re.MULTILINE)
        assert site.search(caddyfile), caddyfile
        (self.root / "caddy" / "Caddyfile.e2e").write_text(site.sub(":80 {", caddyfile))
        stack = yaml.safe_load((self.root / "stack.yaml").read_text())
        services = stack["services"]
        services["caddy"].pop("ports")
        stack["configs"]["caddyfile"]["file"] = "./caddy/Caddyfile.e2e"
        services["telegram-bot-api"]["environment"]["FAKE_PLAIN_HTTP_HOSTS"] = "caddy"
        for name, service in services.items():
            if "healthcheck" in service:
                service["healthcheck"].update(FAST_HEALTH)
            elif name in {b.slug for b in self.bots}:
                service["healthcheck"] = dict(BOT_HEALTH)
            for key in ("update_config", "rollback_config"):
                if key in service["deploy"]:
                    service["deploy"][key]["monitor"] = "5s"
        (self.root / E2E_STACK).write_text(yaml.safe_dump(stack, sort_keys=False))

    def create_secrets(self) -> None:
        wanted = {
            f"{self.name}_postgres_password": secrets.token_hex(16),
            f"{self.name}_telegram_api_hash": secrets.token_hex(16),
            **{f"{self.name}_{bot.slug}_bot_token": bot.token for bot in self.bots},
        }
        for name, value in wanted.items():
            subprocess.run(["docker", "secret", "create", name, "-"], input=value.encode(),
                           check=True, capture_output=True)  # fmt: skip
        self.secret_values |= wanted

    def deploy_stack(self, *args: str) -> subprocess.CompletedProcess[str]:
        """./deploy-stack as the operator runs it (with the test stack file)."""
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHON": sys.executable,
               "HOME": str(Path.home())}  # fmt: skip
        return subprocess.run(
            [str(self.root / "deploy-stack"), "--stack-file", E2E_STACK, *args],
            cwd=self.root, env=env, capture_output=True, text=True, timeout=1500, check=False,
        )  # fmt: skip

    # ------------------------------------------------------------------ observing
    def service(self, name: str) -> str:
        return f"{self.name}_{name}"

    def desired_and_running(self) -> dict[str, tuple[int, int]]:
        out = docker("service", "ls", "--filter", f"label=com.docker.stack.namespace={self.name}",
                     "--format", "{{.Name}} {{.Replicas}}")  # fmt: skip
        found = {}
        for line in out.splitlines():
            name, replicas = line.split()[:2]
            running, desired = replicas.split("/")
            found[name.removeprefix(f"{self.name}_")] = (int(desired), int(running))
        return found

    def containers(self, service: str | None = None) -> list[dict[str, Any]]:
        """Running task containers (of one service), from `docker inspect`."""
        label = f"com.docker.swarm.service.name={self.service(service)}" if service else (
            f"com.docker.stack.namespace={self.name}")  # fmt: skip
        ids = docker("ps", "-q", "--filter", f"label={label}").split()
        return list(json.loads(docker("inspect", *ids))) if ids else []

    def converged(self) -> bool:
        """Every service at its desired replicas, every task container healthy."""
        services = self.desired_and_running()
        if not services or any(d != r for d, r in services.values()):
            return False
        states = [c["State"].get("Health", {}).get("Status") for c in self.containers()]
        total = sum(d for d, _ in services.values())
        return len(states) == total and all(s == "healthy" for s in states)

    def wait_converged(self, timeout: float = 600) -> None:
        wait_for(f"every service of {self.name} at its replicas, healthy", self.converged, timeout)

    def logs(self, service: str) -> str:
        result = subprocess.run(
            ["docker", "service", "logs", "--no-task-ids", "--tail", "100", self.service(service)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        return result.stdout + result.stderr

    def exec(self, service: str, *cmd: str) -> str:
        container = self.containers(service)[0]["Id"]
        return docker("exec", container, *cmd)

    def psql(self, sql: str) -> list[str]:
        out = self.exec("postgres", "psql", "-U", self.db_user, "-d", self.db_name,
                        "-At", "-v", "ON_ERROR_STOP=1", "-c", sql)  # fmt: skip
        return [line for line in out.splitlines() if line]

    def scalar(self, sql: str) -> int:
        return int(self.psql(sql)[0])

    # ------------------------------------------------------------------ the fake Bot API
    def _api_address(self) -> str:
        container = self.containers("telegram-bot-api")[0]["Id"]
        bridge = json.loads(docker("network", "inspect", "docker_gwbridge",
                                   "--format", "{{json .Containers}}"))  # fmt: skip
        return str(bridge[container]["IPv4Address"].split("/")[0])

    def _control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        if self._api is None:
            self._api = self._api_address()
        url = f"http://{self._api}:8081/_control/{path}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
        request.add_header("Content-Type", "application/json")
        # A container of these tests, on the host's docker_gwbridge network.
        with urllib.request.urlopen(request, timeout=10) as response:  # nosec B310
            return json.loads(response.read())

    def send(self, bot: BotSpec, text: str, user_id: int) -> None:
        self._control(f"{bot.token}/message", {"text": text, "user_id": user_id,
                                               "first_name": "Swarm"})  # fmt: skip

    def replies(self, bot: BotSpec, chat_ids: set[int]) -> Counter[int]:
        """sendMessage calls per chat, for the chats in ``chat_ids``."""
        sent = self._control(f"{bot.token}/calls?method=sendMessage")["calls"]
        return Counter(int(c["params"]["chat_id"]) for c in sent
                       if int(c["params"]["chat_id"]) in chat_ids)  # fmt: skip

    # ------------------------------------------------------------------ teardown
    def remove(self) -> None:
        subprocess.run(["docker", "stack", "rm", self.name], capture_output=True, check=False)
        namespace = f"label=com.docker.stack.namespace={self.name}"
        # Stopped task containers still hold their volumes until Swarm removes them.
        wait_for(f"{self.name}'s containers to go",
                 lambda: not docker("ps", "-aq", "--filter", namespace).strip(), 180)  # fmt: skip

        def network_gone() -> bool:
            return not docker("network", "ls", "-q", "--filter", namespace).strip()

        wait_for(f"{self.name}'s network to go", network_gone, 120)
