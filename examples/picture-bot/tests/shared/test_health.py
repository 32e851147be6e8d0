"""The liveness file and the Docker HEALTHCHECK command (`python -m ecosystem_shared.health`)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiogram import Bot
from aiogram.methods import GetUpdates, SendMessage, TelegramMethod

from ecosystem_shared import runtime
from ecosystem_shared.health import check_liveness, main, touch_liveness
from ecosystem_shared.telegram import PollingWatch
from ecosystem_shared.testing.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


def run_check(**env: str) -> subprocess.CompletedProcess[str]:
    """The exact command of the Dockerfile's HEALTHCHECK, from the bot's root."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HEALTH_")}
    return subprocess.run(
        [sys.executable, "-m", "ecosystem_shared.health"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_touch_creates_the_file_and_its_directory(tmp_path: Path) -> None:
    target = tmp_path / "run" / "alive"
    assert touch_liveness(target) is True
    assert target.is_file()
    assert check_liveness(target, 5) is None


def test_touch_refreshes_an_old_file(tmp_path: Path) -> None:
    target = tmp_path / "alive"
    target.write_text("")
    old = time.time() - 3600
    os.utime(target, (old, old))
    assert check_liveness(target, 120) is not None
    touch_liveness(str(target))
    assert time.time() - target.stat().st_mtime < 60
    assert check_liveness(target, 120) is None


def test_touch_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert touch_liveness(blocker / "alive") is False  # parent is a file
    assert touch_liveness(blocker / "alive") is False
    warnings = [r for r in caplog.records if "liveness" in r.getMessage()]
    assert len(warnings) == 1, "the failure is logged once, not every 30 seconds"


def test_touch_refuses_a_planted_symlink(tmp_path: Path) -> None:
    """At a fixed name in a shared /tmp, someone else's symlink must not choose our target."""
    victim = tmp_path / "victim"
    planted = tmp_path / "alive"
    planted.symlink_to(victim)
    assert touch_liveness(planted) is False
    assert not victim.exists(), "the liveness file was written through a symlink"
    victim.write_text("data")
    old = time.time() - 3600
    os.utime(victim, (old, old))
    assert touch_liveness(planted) is False
    assert victim.stat().st_mtime == old and victim.read_text() == "data"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_touch_refuses_another_users_file(tmp_path: Path) -> None:
    planted = tmp_path / "alive"
    planted.write_text("")
    os.chown(planted, 12345, 12345)
    old = time.time() - 3600
    os.utime(planted, (old, old))
    assert touch_liveness(planted) is False
    assert planted.stat().st_mtime == old


def test_touch_creates_a_private_file(tmp_path: Path) -> None:
    target = tmp_path / "alive"
    previous = os.umask(0)
    try:
        assert touch_liveness(target) is True
    finally:
        os.umask(previous)
    assert target.stat().st_mode & 0o777 == 0o600


def test_check_reasons(tmp_path: Path) -> None:
    target = tmp_path / "alive"
    missing = check_liveness(target, 120)
    assert missing is not None and "does not exist" in missing
    target.write_text("")
    now = target.stat().st_mtime
    assert check_liveness(target, 120, now=now + 119) is None
    stale = check_liveness(target, 120, now=now + 300)
    assert stale is not None and "300s old" in stale


def test_main_reads_the_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "alive"
    env = {"HEALTH_FILE": str(target), "HEALTH_MAX_AGE": "60"}
    assert main([], env) == 1
    touch_liveness(target)
    assert main([], env) == 0
    assert main([], {**env, "HEALTH_MAX_AGE": "soon"}) == 1
    assert main([], {**env, "HEALTH_MAX_AGE": "0"}) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4, "exactly one line per check"
    assert lines[1].startswith("healthy")
    assert "HEALTH_MAX_AGE" in lines[2]


def test_healthcheck_command_fresh_stale_missing(tmp_path: Path) -> None:
    target = tmp_path / "alive"
    missing = run_check(HEALTH_FILE=str(target))
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert missing.stdout.count("\n") == 1 and "does not exist" in missing.stdout

    touch_liveness(target)
    fresh = run_check(HEALTH_FILE=str(target))
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr

    old = time.time() - 121
    os.utime(target, (old, old))
    stale = run_check(HEALTH_FILE=str(target))
    assert stale.returncode == 1
    assert "old" in stale.stdout
    assert run_check(HEALTH_FILE=str(target), HEALTH_MAX_AGE="600").returncode == 0


async def test_liveness_file_follows_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime touches the file only while Telegram answers getUpdates."""
    now = [1000.0]
    watch = PollingWatch(clock=lambda: now[0])
    bot = Bot("123:abc")

    async def answer(bot: Bot, method: TelegramMethod[Any]) -> Any:
        return []

    await watch(answer, bot, GetUpdates())
    now[0] += runtime.POLLING_STALE_SECONDS + 1
    await watch(answer, bot, SendMessage(chat_id=1, text="not a poll"))
    assert watch.seconds_since_answer > runtime.POLLING_STALE_SECONDS

    monkeypatch.setattr(runtime, "LIVENESS_SECONDS", 0.01)
    path = tmp_path / "alive"
    keeper = asyncio.create_task(runtime._keep_alive(path, watch))
    try:
        await asyncio.sleep(0.2)
        assert not path.exists(), "touched although polling is stale"
        await watch(answer, bot, GetUpdates())  # Telegram answers again
        await wait_until(lambda: asyncio.sleep(0, path.exists()), what="the liveness file")
    finally:
        keeper.cancel()
        await bot.session.close()


class HealthHandler(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def webhook_server() -> Iterator[tuple[int, type[HealthHandler]]]:
    """A stand-in for the bot's webhook server answering /healthz on a free loopback port."""

    class Handler(HealthHandler):
        status = 200

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], Handler
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_mode_is_healthy_only_while_its_server_answers(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    webhook_server: tuple[int, type[HealthHandler]],
) -> None:
    """A rolling update waits for this: the file alone is touched before the server listens."""
    port, handler = webhook_server
    alive = tmp_path / "alive"
    touch_liveness(alive)
    wildcard = "0.0.0.0"  # nosec B104: what compose sets; the check asks 127.0.0.1
    env = {"HEALTH_FILE": str(alive), "RUN_MODE": "webhook", "WEBHOOK_LISTEN_HOST": wildcard,
           "WEBHOOK_LISTEN_PORT": str(port)}  # fmt: skip
    assert main([], env) == 0
    assert f"http://127.0.0.1:{port}/healthz answers" in capsys.readouterr().out
    handler.status = 503
    assert main([], env) == 1
    assert f"unhealthy: the webhook server answered 503 on http://127.0.0.1:{port}/healthz" in (
        capsys.readouterr().out
    )
    assert main([], {**env, "WEBHOOK_LISTEN_PORT": str(free_port())}) == 1
    assert "unhealthy: the webhook server does not answer http://127.0.0.1:" in (
        capsys.readouterr().out
    )
    assert main([], {**env, "WEBHOOK_LISTEN_PORT": "http"}) == 1
    assert "WEBHOOK_LISTEN_PORT must be a port number (got 'http')" in capsys.readouterr().out
    # Polling: no server to ask; a stale file is unhealthy whatever the server says.
    assert main([], {**env, "RUN_MODE": "polling", "WEBHOOK_LISTEN_PORT": "1"}) == 0
    handler.status = 200
    old = time.time() - 500
    os.utime(alive, (old, old))
    assert main([], env) == 1
    assert "the bot stopped polling" in capsys.readouterr().out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
