"""Broadcasts sent by the bot as a process (real PostgreSQL, the fake Bot API over HTTP), jobs
made with ``python -m ecosystem_shared.broadcast``: exactly once through blocks, deleted accounts
and flood control; a ``kill -9`` mid-job; two replicas of one bot (Redis) and one sender."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ecosystem_shared.testing.bot_process import BotProcess
from ecosystem_shared.testing.fake_bot_api import FakeBotAPI
from ecosystem_shared.testing.postgres import PostgresServer
from ecosystem_shared.testing.servers import RedisServer
from ecosystem_shared.testing.telegram_fixtures import StartBot
from ecosystem_shared.testing.waiting import fetch, wait_until

pytestmark = pytest.mark.slow  # bot processes sending thousands of messages

TIMEOUT = 60.0  # generous: the machine may be busy; nothing waits this long when all is well
BOT = "Broadcast bot"
FAST: dict[str, Any] = {
    "BOT_NAME": BOT,
    "RATE_LIMIT_SECONDS": "0",
    "ANALYTICS_FLUSH_SECONDS": "0.1",
    "DB_RECONNECT_SECONDS": "0.5",
}
FIRST_USER = 5_000_000


async def seed_audience(url: str, users: Iterable[int], bot_name: str = BOT) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.executemany(
            "INSERT INTO shared.bot_audience (bot_name, telegram_id, first_seen, last_seen)"
            " VALUES ($1, $2, now(), now())",
            [(bot_name, user) for user in users],
        )
    finally:
        await conn.close()


async def broadcast_cli(rootdir: Path, url: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ecosystem_shared.broadcast",
        "--database-url",
        url,
        "--bot-name",
        BOT,
        *args,
        cwd=rootdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def create(rootdir: Path, url: str, *args: str) -> int:
    code, out, err = await broadcast_cli(rootdir, url, "create", "--yes", *args)
    assert code == 0, err
    return int(out.split()[0])


async def show(rootdir: Path, url: str, job_id: int) -> dict[str, Any]:
    code, out, err = await broadcast_cli(rootdir, url, "show", str(job_id), "--json")
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


async def wait_done(rootdir: Path, url: str, job_id: int) -> dict[str, Any]:
    async def probe() -> bool:
        rows = await fetch(url, "SELECT state FROM shared.broadcasts WHERE id = $1", job_id)
        return bool(rows[0]["state"] == "done")

    await wait_until(probe, timeout=TIMEOUT, interval=0.2, what=f"broadcast {job_id} done")
    return await show(rootdir, url, job_id)


def broadcast_deliveries(api: FakeBotAPI) -> dict[Any, int]:
    """Chat -> broadcast messages delivered (users of the test's range only)."""
    counts = api.send_log.deliveries("sendMessage")
    return {chat: n for chat, n in counts.items() if isinstance(chat, int) and chat >= FIRST_USER}


async def test_2000_recipients_blocked_deactivated_and_429s_exactly_once(
    bot_process_factory: StartBot,
    fake_api: FakeBotAPI,
    database_url: str,
    request: pytest.FixtureRequest,
) -> None:
    users = list(range(FIRST_USER, FIRST_USER + 2000))
    blocked, deactivated = users[::20], users[1::100]  # 5% and 1%
    missing = users[3::500]  # accounts Telegram no longer knows: 400 "chat not found"
    await seed_audience(database_url, users)
    fake_api.block(*blocked)
    fake_api.deactivate(*deactivated)
    fake_api.forget_chats(*missing)
    flood = fake_api.set_flood_control(probability=0.003, seed=7, retry_after=1)
    assert flood is not None
    await bot_process_factory(DATABASE_URL=database_url, BROADCAST_RATE="400", **FAST)
    rootdir = request.config.rootpath
    job_id = await create(rootdir, database_url, "--text", "<b>News</b> for you")

    await fake_api.wait_for_calls("sendMessage", 300, TIMEOUT)
    talker = 4_000_001  # someone writing to the bot mid-broadcast is answered
    fake_api.push_message("/start", user_id=talker)
    await fake_api.wait_for_call("sendMessage", TIMEOUT, chat_id=talker)

    summary = await wait_done(rootdir, database_url, job_id)
    delivered = broadcast_deliveries(fake_api)
    reachable = set(users) - set(blocked) - set(deactivated) - set(missing)
    assert set(delivered) == reachable
    assert set(delivered.values()) == {1}, "nobody gets the message twice"
    assert flood.triggers, "flood control answered 429 at least once"
    assert summary["total"] == 2000
    assert summary["sent"] == len(reachable) == len(delivered)
    assert summary["blocked"] == len(set(blocked) | set(deactivated))
    assert summary["failed"] == len(missing)
    assert (summary["unknown"], summary["pending"]) == (0, 0)
    reasons = await fetch(
        database_url,
        "SELECT DISTINCT reason FROM shared.broadcast_recipients WHERE state = 'failed'",
    )
    assert [row["reason"] for row in reasons] == ["Bad Request: chat not found"]
    assert summary["state"] == "done"
    rows = await fetch(
        database_url,
        "SELECT telegram_id FROM shared.bot_audience"
        " WHERE bot_name = $1 AND blocked_at IS NOT NULL",
        BOT,
    )
    assert {row["telegram_id"] for row in rows} == set(blocked) | set(deactivated)


async def test_kill_9_mid_job_then_restart_sends_nobody_twice(
    bot_process_factory: StartBot,
    fake_api: FakeBotAPI,
    database_url: str,
    request: pytest.FixtureRequest,
) -> None:
    users = list(range(FIRST_USER, FIRST_USER + 800))
    await seed_audience(database_url, users)
    rate = 100  # the in-flight window is one second of sends: 100
    env = {"DATABASE_URL": database_url, "BROADCAST_RATE": str(rate), **FAST}
    bot = await bot_process_factory(**env)
    rootdir = request.config.rootpath
    job_id = await create(rootdir, database_url, "--text", "Hello")
    await fake_api.wait_for_calls("sendMessage", 250, TIMEOUT)
    await bot.stop(signal.SIGKILL)
    assert len(broadcast_deliveries(fake_api)) < len(users), "killed mid-job"

    await bot_process_factory(**env)
    summary = await wait_done(rootdir, database_url, job_id)
    delivered = broadcast_deliveries(fake_api)
    assert set(delivered.values()) == {1}, "nobody gets the message twice"
    assert summary["unknown"] <= rate
    assert summary["sent"] + summary["unknown"] == len(users)
    # Every recipient not unknown got it exactly once; unknown ones at most once.
    assert summary["sent"] <= len(delivered) <= summary["sent"] + summary["unknown"]
    unknown = await fetch(
        database_url,
        "SELECT telegram_id FROM shared.broadcast_recipients WHERE broadcast_id = $1"
        " AND state <> 'unknown'",
        job_id,
    )
    assert {row["telegram_id"] for row in unknown} <= set(delivered)


async def test_two_replicas_with_redis_one_sender(
    bot_module: str,
    database_url: str,
    redis_server: RedisServer,
    request: pytest.FixtureRequest,
) -> None:
    users = list(range(FIRST_USER, FIRST_USER + 400))
    await seed_audience(database_url, users)
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_server.url,
        "BROADCAST_RATE": "200",
        **FAST,
    }
    rootdir = request.config.rootpath
    async with contextlib.AsyncExitStack() as stack:
        apis = [
            await stack.enter_async_context(FakeBotAPI(token=f"{7101 + i}:TEST-replica-{i}"))
            for i in range(2)
        ]
        replicas = [BotProcess(bot_module, rootdir, api, env, start_timeout=90) for api in apis]
        for replica in replicas:
            stack.push_async_callback(replica.stop)
        await asyncio.gather(*(replica.start() for replica in replicas))
        job_id = await create(rootdir, database_url, "--text", "Both replicas see this job")
        summary = await wait_done(rootdir, database_url, job_id)
        per_replica = [broadcast_deliveries(api) for api in apis]
    assert summary["sent"] == len(users)
    assert sorted(len(d) for d in per_replica) == [0, len(users)], "one replica sent it all"
    assert all(set(d.values()) <= {1} for d in per_replica)


async def test_database_gone_mid_job_pauses_it_then_it_resumes_nothing_twice(
    bot_process_factory: StartBot,
    fake_api: FakeBotAPI,
    own_server: PostgresServer,
    request: pytest.FixtureRequest,
) -> None:
    url = own_server.url
    rate = 100
    bot = await bot_process_factory(DATABASE_URL=url, BROADCAST_RATE=str(rate), **FAST)
    await bot.wait_for_output("Connected to the database")
    users = list(range(FIRST_USER, FIRST_USER + 700))
    await seed_audience(url, users)
    rootdir = request.config.rootpath
    job_id = await create(rootdir, url, "--text", "Through an outage")
    await fake_api.wait_for_calls("sendMessage", 200, TIMEOUT)

    await asyncio.to_thread(own_server.stop)
    await bot.wait_for_output("Broadcasts wait for the database")
    during = len(broadcast_deliveries(fake_api))
    await asyncio.sleep(2.0)  # the job stands still: no window is taken without the database
    assert len(broadcast_deliveries(fake_api)) == during
    assert during < len(users)

    await asyncio.to_thread(own_server.start)
    summary = await wait_done(rootdir, url, job_id)
    delivered = broadcast_deliveries(fake_api)
    assert bot.returncode is None, "the same process went on"
    assert set(delivered.values()) == {1}, "nobody gets the message twice"
    assert set(delivered) == set(users)
    # The window sent while the database went away was written once it came back.
    assert (summary["sent"], summary["unknown"]) == (len(users), 0)
