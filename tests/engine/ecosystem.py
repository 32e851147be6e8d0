"""A rendered ecosystem run by a real Docker engine, driven as an operator would drive it.

:class:`Ecosystem` renders bots and the ecosystem directory from this checkout, writes the
``.env`` files the ecosystem README asks for, points the image variables at the stand-ins and
runs ``docker compose`` there. The only test-specific compose file publishes the fake Bot API's
port on the host's loopback (so the tests can push updates and read replies) and shortens the
health-check intervals; nothing else differs from what an operator starts.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from devkit.render import copy_template
from tests.engine.standins import StandIns

T = TypeVar("T")

TEST_OVERRIDE = "compose.e2e.yaml"
CDN_SERVER = Path(__file__).parent / "images" / "fake-wb-cdn"
# An article on basket-26 of the sample route map (vol 4851), three photos of 4 KiB each: above
# MEDIA_UPLOAD_LIMIT_MB below, so the media bot hands them to the Local Bot API server by path.
ARTICLE = 485_112_345
CDN_ENV = {"CDN_ARTICLES": str(ARTICLE), "CDN_PHOTOS": "3", "CDN_PHOTO_SIZE": "4096"}
CDN_URL = "http://fake-wb-cdn:8080"
ROUTE_MAP_PATH = "cdn.wbbasket.ru/api/v3/upstreams"  # where fake_wb_cdn.py serves it


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


@dataclass(frozen=True)
class BotSpec:
    slug: str
    answers: dict[str, Any]
    token: str = field(
        default_factory=lambda: f"{10**9 + secrets.randbelow(10**9)}:e2e-{secrets.token_hex(8)}"
    )

    @property
    def package(self) -> str:
        return self.slug.replace("-", "_")


class Ecosystem:
    def __init__(
        self,
        root: Path,
        bots: Sequence[BotSpec],
        standins: StandIns,
        *,
        project: str,
        deployment: str = "separate",
        answers: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        overrides: Sequence[str] = (),
    ) -> None:
        """``answers`` and ``env``: more ecosystem answers and ``.env`` values; ``overrides``:
        more test compose files in the ecosystem directory, written by the caller."""
        self.root = root
        self.deployment = deployment
        self.answers = dict(answers or {})
        self.env = dict(env or {})
        self.overrides = list(overrides)
        self.bots = list(bots)
        self.standins = standins
        self.project = project
        self.db_user = "eco_admin"
        self.db_name = "eco"
        self._api_port: int | None = None

    # ------------------------------------------------------------------ setup
    def render(self) -> None:
        slugs = ",".join(bot.slug for bot in self.bots)
        copy_template(
            self.root,
            {"project_type": "ecosystem", "ecosystem_name": self.project, "bots": slugs,
             "with_local_bot_api": True, "deployment": self.deployment, **self.answers},
        )  # fmt: skip
        for bot in self.bots:
            answers = {"bot_slug": bot.slug, "package_name": bot.package, **bot.answers}
            copy_template(self.root / bot.slug, answers)
            self._write_bot_env(bot)
        env = {
            "POSTGRES_USER": self.db_user,
            "POSTGRES_PASSWORD": secrets.token_hex(16),
            "POSTGRES_DB": self.db_name,
            "TELEGRAM_API_ID": "12345",
            "TELEGRAM_API_HASH": secrets.token_hex(16),
            **self.standins.env(),
            **self.env,
        }
        (self.root / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        # As the ecosystem README says: the backup service (uid 70) must be able to write here.
        backups = self.root / "backups"
        backups.mkdir(exist_ok=True)
        shutil.chown(backups, 70, 70)
        (self.root / TEST_OVERRIDE).write_text(self._override())

    def _write_bot_env(self, bot: BotSpec) -> None:
        example = (self.root / bot.slug / ".env.example").read_text()
        values = {
            "BOT_TOKEN": bot.token,
            # Bots without the Local Bot API server would call api.telegram.org: here every bot
            # talks to the fake server, as a bot on the local server does.
            "TELEGRAM_API_BASE_URL": "http://telegram-bot-api:8081",
            "ANALYTICS_FLUSH_SECONDS": "0.2",
        }
        if bot.answers.get("mode") == "media":  # the CDN stand-in, and files sent by path
            values |= {
                "WB_ROUTE_MAP_URL": f"{CDN_URL}/{ROUTE_MAP_PATH}",
                "WB_PHOTO_BASE_URL": CDN_URL + "/{host}",
                "WB_VIDEO_BASE_URL": CDN_URL + "/{host}",
                "MEDIA_UPLOAD_LIMIT_MB": "0.001",
            }
        lines = []
        for line in example.splitlines():
            key = line.split("=", 1)[0]
            lines.append(f"{key}={values.pop(key)}" if key in values and "=" in line else line)
        lines += [f"{k}={v}" for k, v in values.items()]
        (self.root / bot.slug / ".env").write_text("\n".join(lines) + "\n")

    def _override(self) -> str:
        fast = {"interval": "2s", "start_period": "120s"}
        services: dict[str, Any] = {
            "telegram-bot-api": {"ports": ["127.0.0.1::8081"], "healthcheck": fast},
            "postgres": {"healthcheck": fast},
            "backup": {"healthcheck": fast},
        }
        for service in {self.service_of(bot) for bot in self.bots}:
            services[service] = {"healthcheck": fast}
        for bot in self.bots:
            if bot.answers.get("mode") == "media":
                services["fake-wb-cdn"] = self._cdn_service(bot)
        return json.dumps({"services": services}, indent=2)  # JSON is YAML

    def _cdn_service(self, bot: BotSpec) -> dict[str, Any]:
        """The fake CDN of the media bot's ecosystem_shared/testing/fake_wb_cdn.py, in its image."""
        code = self.code_dir(bot)
        return {
            "image": f"{self.project}-{self.service_of(bot)}",
            "pull_policy": "never",
            "command": ["python", "/cdn-server/server.py"],
            "environment": {"PYTHONPATH": f"{code}:/cdn-bot", **CDN_ENV},
            "volumes": [
                f"./{bot.slug}/ecosystem_shared/testing:/cdn-bot:ro",
                f"{CDN_SERVER}:/cdn-server:ro",
            ],
            "healthcheck": {
                "test": [
                    "CMD",
                    "python",
                    "-c",
                    "import urllib.request as u; u.urlopen("
                    f"'http://127.0.0.1:8080/{ROUTE_MAP_PATH}', timeout=5)",
                ],
                "interval": "2s",
                "start_period": "60s",
            },
            "networks": ["telegram-network"],
        }

    def service_of(self, bot: BotSpec) -> str:
        """The compose service running ``bot``: its own, or the host's ``bots``."""
        return "bots" if self.deployment == "host" else bot.slug

    def code_dir(self, bot: BotSpec) -> str:
        """Where ``bot``'s code lives inside its container."""
        return f"/srv/ecosystem/{bot.slug}" if self.deployment == "host" else "/app"

    # ------------------------------------------------------------------ docker compose
    def compose(self, *args: str, timeout: float = 900) -> str:
        """Run docker compose in the ecosystem; its stdout, or a failure with what it said."""
        files = ["compose.yaml", TEST_OVERRIDE, *self.overrides]
        cmd = ["docker", "compose", "-p", self.project, *(f"--file={name}" for name in files)]
        result = subprocess.run(
            [*cmd, *args], cwd=self.root, capture_output=True, text=True, timeout=timeout,
            check=False, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if result.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
            )
        return result.stdout

    def up(self, *services: str) -> None:
        self.compose("up", "-d", "--build", "--wait", "--wait-timeout", "600", *services)
        self._api_port = None

    @contextmanager
    def running(self) -> Iterator[Ecosystem]:
        """Up for the block (its logs printed if it never got healthy), then down with volumes."""
        try:
            self.up()
        except AssertionError:
            print(self.logs())
            self.down(volumes=True)
            raise
        try:
            yield self
        finally:
            self.down(volumes=True)

    def services(self) -> list[dict[str, Any]]:
        out = self.compose("ps", "--format", "json")
        text = out.strip()
        if text.startswith("["):
            return list(json.loads(text))
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def wait_healthy(self, service: str, timeout: float = 120) -> None:
        def healthy() -> bool:
            states = {s["Service"]: s.get("Health") for s in self.services()}
            return states.get(service) == "healthy"

        wait_for(f"{service} to be healthy", healthy, timeout)

    def logs(self, service: str = "") -> str:
        return self.compose("logs", "--no-color", "--tail", "200", *([service] if service else []))

    def exec(self, service: str, *cmd: str) -> str:
        return self.compose("exec", "-T", service, *cmd)

    def psql(self, sql: str) -> list[str]:
        out = self.exec(
            "postgres", "psql", "-U", self.db_user, "-d", self.db_name,
            "-At", "-v", "ON_ERROR_STOP=1", "-c", sql,
        )  # fmt: skip
        return [line for line in out.splitlines() if line]

    def scalar(self, sql: str) -> int:
        return int(self.psql(sql)[0])

    # ------------------------------------------------------------------ the fake Bot API
    @property
    def api_port(self) -> int:
        if self._api_port is None:
            out = self.compose("port", "telegram-bot-api", "8081").strip()
            self._api_port = int(out.rsplit(":", 1)[1])
        return self._api_port

    def _control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        url = f"http://127.0.0.1:{self.api_port}/_control/{path}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:  # nosec B310: loopback
            return json.loads(response.read())

    def send(self, bot: BotSpec, text: str, user_id: int, first_name: str = "E2E") -> None:
        self._control(f"{bot.token}/message", {"text": text, "user_id": user_id,
                                               "first_name": first_name})  # fmt: skip

    def calls(self, bot: BotSpec, method: str) -> list[dict[str, Any]]:
        return list(self._control(f"{bot.token}/calls?method={method}")["calls"])

    def replies_to(self, bot: BotSpec, chat_ids: set[int]) -> set[int]:
        sent = self.calls(bot, "sendMessage")
        return {int(c["params"]["chat_id"]) for c in sent} & chat_ids

    def down(self, *, volumes: bool = False) -> None:
        self.compose("down", "--remove-orphans", *(["--volumes"] if volumes else []))
