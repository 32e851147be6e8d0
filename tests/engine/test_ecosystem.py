"""The ecosystem on a real Docker engine: build, start, talk to the bots, break things, restore.

Every test here shares one running ecosystem (a text bot on the cloud-style API and a media
bot on the Local Bot API server, with PostgreSQL and backups), in the order an operator
following the ecosystem README meets them, once per deployment mode: one container per bot
(``separate``) and every bot under ``ecosystem_host`` in one ``bots`` container (``host``); the
volume and backup checks, which no bot takes part in, run in ``separate`` mode. Stand-in images
replace the registries' images.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.engine.ecosystem import ARTICLE, BotSpec, Ecosystem, wait_for
from tests.engine.standins import HOST_PYTHON, StandIns, build_standins

pytestmark = [pytest.mark.engine, pytest.mark.xdist_group("engine")]

TEXT = BotSpec("echo-bot", {"bot_name": "Echo Bot", "mode": "text", "local_bot_api": False})
MEDIA = BotSpec("picture-bot", {"bot_name": "Picture Bot", "mode": "media", "local_bot_api": True})
BOTS = (TEXT, MEDIA)
_users = itertools.count(7_000_001)


def docker_engine_available() -> str | None:
    try:
        result = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    except FileNotFoundError:
        return "the docker client is not installed"
    if result.returncode != 0:
        return f"no Docker engine answers: {result.stderr.strip()[-300:]}"
    return None


@pytest.fixture(scope="module", params=["separate", "host"])
def eco(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Ecosystem]:
    problem = docker_engine_available()
    if problem:
        pytest.fail(
            f"{problem}. These tests need a Docker engine (`.ci/run` starts dockerd); "
            "deselect them with -m 'not engine'.",
            pytrace=False,
        )
    root = tmp_path_factory.mktemp(f"engine-{request.param}") / "ecosystem"
    project = f"e2e{request.param[0]}{secrets.token_hex(3)}"
    # The host image on a Python with immortal objects (3.13), as its default 3.12 has them.
    standins = StandIns(python=HOST_PYTHON) if request.param == "host" else StandIns()
    ecosystem = Ecosystem(root, BOTS, standins, project=project, deployment=request.param)
    ecosystem.render()
    # The Local Bot API stand-in is the fake Bot API a rendered bot ships in its test kit.
    build_standins(root / TEXT.slug / "ecosystem_shared", standins)
    with ecosystem.running():
        yield ecosystem


def start_and_wait(eco: Ecosystem, bot: BotSpec, users: list[int], timeout: float = 60) -> None:
    for user in users:
        eco.send(bot, "/start", user)
    wanted = set(users)
    wait_for(
        f"{bot.slug} to answer /start of {len(users)} users",
        lambda: eco.replies_to(bot, wanted) == wanted,
        timeout,
    )


def stored(eco: Ecosystem, bot: BotSpec, users: list[int], event: str = "user_start") -> int:
    ids = ",".join(map(str, users))
    return eco.scalar(
        "SELECT count(*) FROM shared.analytics_events e JOIN shared.users u USING (telegram_id) "
        f"WHERE telegram_id IN ({ids}) AND e.event_type = '{event}'"  # nosec B608: ints
    )


def test_every_service_reaches_healthy(eco: Ecosystem) -> None:
    states = {s["Service"]: (s["State"], s.get("Health", "")) for s in eco.services()}
    expected = {"postgres", "telegram-bot-api", "backup", *(eco.service_of(b) for b in BOTS)}
    assert states.pop("fake-wb-cdn") == ("running", "healthy")  # the tests' Wildberries stand-in
    assert set(states) == expected
    assert all(state == ("running", "healthy") for state in states.values()), states


def test_the_host_shares_an_immortal_heap(eco: Ecosystem) -> None:
    """In host mode, the parent made its preloaded objects immortal before forking the bots."""
    if eco.deployment != "host":
        pytest.skip("separate services: no host process")
    log = eco.compose("logs", "--no-color", "bots")
    found = re.search(r"immortal objects: (\d+);", log)
    assert found and int(found[1]) > 100_000, log[-4000:]


@pytest.mark.parametrize("bot", BOTS, ids=lambda b: b.slug)
def test_start_reaches_each_bot_and_lands_in_the_shared_database(
    eco: Ecosystem, bot: BotSpec
) -> None:
    users = [next(_users) for _ in range(3)]
    start_and_wait(eco, bot, users)
    wait_for(f"{bot.slug}'s events in PostgreSQL", lambda: stored(eco, bot, users) == 3)
    names = eco.psql(
        f"SELECT DISTINCT bot_name FROM shared.analytics_events WHERE telegram_id = {users[0]}"  # nosec B608: an int
    )
    assert names == [bot.answers["bot_name"]]


def test_media_bot_hands_files_to_the_local_server_by_path(eco: Ecosystem) -> None:
    """An article's photos, above the bot's multipart limit, go to the Local Bot API server as
    paths in the shared volume; the server reads them there (the fake records what it read)."""
    user = next(_users)
    eco.send(MEDIA, str(ARTICLE), user)

    def album() -> dict[str, Any] | None:
        sent = [c for c in eco.calls(MEDIA, "sendMediaGroup") if c["params"]["chat_id"] == user]
        return sent[0] if sent else None

    call = wait_for("the album of the article", album, 90)
    files = call["files"]
    assert len(files) == 3, files
    for ref, upload in files.items():
        assert ref.startswith("file:///srv/bot-files/"), ref  # a path, not a multipart part
        assert upload["path"].startswith("/srv/bot-files/") and upload["size"] == 4096
    wait_for(
        "photo_sent in PostgreSQL",
        lambda: stored(eco, MEDIA, [user], "photo_sent") == 1,
    )


def test_database_is_never_reachable_from_the_host(eco: Ecosystem) -> None:
    """No container but the tests' fake Bot API binds a host port, and that one on loopback."""
    for service in eco.services():
        ports = json.loads(
            subprocess.run(
                ["docker", "inspect", "--format", "{{json .NetworkSettings.Ports}}", service["ID"]],
                capture_output=True, text=True, check=True,
            ).stdout
        )  # fmt: skip
        bindings = [b for bound in (ports or {}).values() for b in bound or []]
        if service["Service"] == "telegram-bot-api":  # published by the tests' override only
            assert bindings and {b["HostIp"] for b in bindings} == {"127.0.0.1"}, bindings
        else:
            assert bindings == [], (service["Service"], ports)


@pytest.mark.parametrize("bot", BOTS, ids=lambda b: b.slug)
def test_bot_containers_run_as_non_root_with_their_files(eco: Ecosystem, bot: BotSpec) -> None:
    service, code = eco.service_of(bot), eco.code_dir(bot)
    uid = eco.exec(service, "id", "-u").strip()
    assert uid != "0"
    # The code is readable by the bot's user; the root file system is read-only.
    eco.exec(service, "test", "-r", f"{code}/{bot.package}/__main__.py")
    eco.exec(service, "test", "-r", f"{code}/ecosystem_shared/runtime.py")
    denied = eco.exec(service, "sh", "-c", f"touch {code}/x 2>&1 || echo denied")
    assert "denied" in denied


def test_postgres_restart_mid_traffic_loses_nothing(eco: Ecosystem) -> None:
    users = [next(_users) for _ in range(60)]

    def send_all() -> None:
        for user in users:
            eco.send(TEXT, "/start", user)
            time.sleep(0.1)

    sender = threading.Thread(target=send_all)
    sender.start()
    eco.compose("restart", "postgres")
    sender.join()
    eco.wait_healthy("postgres")
    wanted = set(users)
    wait_for("every /start answered", lambda: eco.replies_to(TEXT, wanted) == wanted, 120)
    wait_for(
        "every event stored after the restart",
        lambda: stored(eco, TEXT, users) == len(users),
        120,
    )


@pytest.mark.parametrize("eco", ["separate"], indirect=True)
def test_down_then_up_keeps_the_data(eco: Ecosystem) -> None:
    before = eco.scalar("SELECT count(*) FROM shared.users")
    assert before > 0
    eco.down()
    eco.up()
    assert eco.scalar("SELECT count(*) FROM shared.users") == before
    users = [next(_users)]
    start_and_wait(eco, MEDIA, users)


@pytest.mark.parametrize("eco", ["separate"], indirect=True)
def test_backup_on_demand_and_documented_restore_into_a_fresh_volume(eco: Ecosystem) -> None:
    users = eco.scalar("SELECT count(*) FROM shared.users")
    eco.exec("backup", "sh", "/scripts/backup.sh")
    dumps = sorted((eco.root / "backups").glob(f"{eco.db_name}-*.dump"))
    assert dumps, list((eco.root / "backups").iterdir())
    # A lost server: everything down, volumes gone. The README's "restore into a brand-new
    # server": start postgres and backup, restore, then the bots.
    eco.down(volumes=True)
    eco.up("postgres", "backup")
    assert eco.scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'shared'") >= 0
    eco.exec("backup", "sh", "/scripts/restore.sh", f"/backups/{Path(dumps[-1]).name}")
    assert eco.scalar("SELECT count(*) FROM shared.users") == users
    eco.up()
    start_and_wait(eco, TEXT, [next(_users)])
