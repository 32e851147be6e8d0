"""Two hosts (``python -m ecosystem_host``) running the same bot: one broadcast sender.

A second host started with the same bot (a second deployment by mistake, or an old and a new
container overlapping during a redeploy) has the same token and the same database. Both children
long-poll the one fake Bot API, as they would Telegram: each poll ends the other's with a 409
"Conflict: terminated by other getUpdates request" (the fake does what Telegram does; aiogram
logs it and polls again), and both run a broadcast sender. The database must let only one of
them send a job: every recipient gets the message once, and one process says it sent it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path
from typing import Any

from devkit.testkit import shared_module
from tests.helpers import PYTHON, assert_ok, run
from tests.test_backups import server_url  # noqa: F401 - a fixture
from tests.test_host import (  # noqa: F401 - ecosystem and database_url are fixtures
    BOTS,
    HOST,
    MARKER,
    HostProcess,
    bot_env,
    database_url,
    ecosystem,
    fake_apis,
    write_env,
)

SLUG = "text-bot"
BOT_NAME = str(BOTS[SLUG]["bot_name"])
FIRST_USER = 6_000_000
RECIPIENTS = 600
TIMEOUT = 60.0

waiting = shared_module("testing.waiting")  # the bots' own helpers, from template/


async def seed_audience(url: str, users: range) -> None:
    """``users`` in the bot's audience, as if each had written to it (one statement)."""
    await waiting.fetch(
        url,
        "INSERT INTO shared.bot_audience (bot_name, telegram_id, first_seen, last_seen)"
        " SELECT $1, id, now(), now() FROM generate_series($2::bigint, $3::bigint) AS id",
        BOT_NAME,
        users.start,
        users.stop - 1,
    )


async def broadcast_cli(bot_dir: Path, url: str, *args: str) -> Any:
    """``python -m ecosystem_shared.broadcast`` from the bot's directory: its JSON, or the id
    of the job it created."""
    cmd = [PYTHON, "-m", "ecosystem_shared.broadcast", "--database-url", url]
    done = await asyncio.to_thread(run, [*cmd, "--bot-name", BOT_NAME, *args], bot_dir, timeout=60)
    assert_ok(done, f"broadcast {args[0]}")
    # stderr is in stdout: the fixture's ecosystem_shared says where it was imported from.
    out = "\n".join(line for line in done.stdout.splitlines() if MARKER not in line)
    return json.loads(out) if "--json" in args else int(out.split()[0])


async def wait_done(bot_dir: Path, url: str, job_id: int) -> dict[str, Any]:
    async def summary() -> dict[str, Any]:
        shown = await broadcast_cli(bot_dir, url, "show", str(job_id), "--json")
        assert isinstance(shown, dict)
        return shown

    shown: dict[str, Any] = await waiting.wait_until(
        summary,
        lambda shown: shown["state"] == "done",
        timeout=TIMEOUT,
        interval=0.5,
        what=f"broadcast {job_id} done",
    )
    return shown


@HOST
def test_two_hosts_running_the_same_bot_send_a_broadcast_once(
    ecosystem: Path,  # noqa: F811 - the imported fixture
    database_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with fake_apis([SLUG]) as apis, contextlib.AsyncExitStack() as stack:
            api = apis[SLUG]
            bot_dir = ecosystem / SLUG
            write_env(bot_dir, **bot_env(api, database_url, BROADCAST_RATE="150"))
            hosts = [HostProcess(ecosystem, [SLUG], tmp_path / f"health-{n}") for n in (1, 2)]
            for host in hosts:
                await stack.enter_async_context(host.running())
                # In turn: the first child applies the migrations alone.
                await host.wait_for(rf"^\[host\] .* {SLUG}: polling \(pid \d+", 90)
            users = range(FIRST_USER, FIRST_USER + RECIPIENTS)
            await seed_audience(database_url, users)
            job_id = await broadcast_cli(bot_dir, database_url, "create", "--yes", "--text", "Hi")
            summary = await wait_done(bot_dir, database_url, job_id)
            for host in hosts:  # both still running: neither sender was simply absent
                assert host.process is not None and host.process.returncode is None, host.output
                assert await host.stop() == 0, host.output

        delivered = {
            chat: n
            for chat, n in api.send_log.deliveries("sendMessage").items()
            if isinstance(chat, int) and chat >= FIRST_USER
        }
        assert set(delivered) == set(users), f"{len(set(users) - set(delivered))} missed"
        assert api.send_log.duplicates("sendMessage") == {}, "nobody gets the message twice"
        assert (summary["sent"], summary["total"], summary["unknown"]) == (RECIPIENTS,) * 2 + (0,)
        # Which process sent: the sender logs when it takes a job and when it finishes it.
        sending = [
            len(re.findall(rf"^\[{SLUG}\] .*Broadcast {job_id}: sending", host.output, re.M))
            for host in hosts
        ]
        done = [
            len(re.findall(rf"^\[{SLUG}\] .*Broadcast {job_id}: done", host.output, re.M))
            for host in hosts
        ]
        assert sorted(sending) == [0, 1] and done == sending, (sending, done)
        # Both children really polled the one token (and were told so, as Telegram would).
        assert all("TelegramConflictError" in host.output for host in hosts)

    asyncio.run(scenario())
