"""Webhook mode as in production: three bot processes behind a real nginx, sharing a real Redis.

The fake Bot API plays Telegram: the bots' ``setWebhook`` gives it the proxy's URL and the
secret, and it delivers every update by POST with ``X-Telegram-Bot-Api-Secret-Token``,
retrying what is not answered with 2xx. Each bot logs the updates it handled (LOG_LEVEL=DEBUG
shows aiogram's "Update id=N is handled"), which tells which instance handled what.

One scenario, phase after phase, because starting three interpreters is the slow part:
every update handled exactly once; one user flooding all instances limited as one user; a
wrong or missing secret changes nothing; an instance killed, the others answer and a restarted
one does not set the webhook again; Redis stopped and restarted, the bots keep answering.
"""

import asyncio
import contextlib
import importlib
import re
import secrets
import signal
import time
from collections import Counter
from typing import Any

import aiohttp
import pytest

from ecosystem_shared.testing.bot_process import BotProcess
from ecosystem_shared.testing.fake_bot_api import FakeBotAPI
from ecosystem_shared.testing.fake_webhook import SECRET_HEADER
from ecosystem_shared.testing.servers import NginxProxy, RedisServer, free_port
from ecosystem_shared.testing.waiting import fetch, wait_until

TIMEOUT = 60.0  # generous: the machine may be busy; nothing waits this long when all is well
INSTANCES = 3
HANDLED = re.compile(r"Update id=(\d+) is (?:not )?handled")


def handled_by(bots: list[BotProcess]) -> list[Counter[int]]:
    """For each instance: how many times it handled each update id."""
    return [Counter(int(m) for m in HANDLED.findall(bot.output)) for bot in bots]


async def settle(api: FakeBotAPI, bots: list[BotProcess], update_ids: set[int]) -> None:
    """Wait until every update was delivered (2xx) and handled by some instance."""

    async def probe() -> set[int]:
        handled: set[int] = set().union(*handled_by(bots))
        delivered = {d.update_id for d in api.webhook.deliveries if d.ok}
        return update_ids - (handled & delivered)

    await wait_until(probe, lambda left: not left, timeout=TIMEOUT, what="updates handled")
    await asyncio.sleep(0.3)  # anything sent twice would show by now


def start_each(api: FakeBotAPI, users: range) -> set[int]:
    """Each user sends /start once; the update ids."""
    return {int(api.push_message("/start", user_id=user)["update_id"]) for user in users}


def replies(api: FakeBotAPI, chat_id: int) -> int:
    return len(api.calls("sendMessage", chat_id=chat_id))


async def post(url: str, update: dict[str, Any], secret: str | None) -> int:
    headers = {SECRET_HEADER: secret} if secret is not None else {}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=update, headers=headers) as response,
    ):
        return response.status


@pytest.mark.slow  # starts bot processes
async def test_three_instances_behind_nginx(
    fake_api: FakeBotAPI,
    bot_module: str,
    database_url: str,
    redis_server: RedisServer,
    request: pytest.FixtureRequest,
) -> None:
    settings = importlib.import_module(f"{bot_module}.settings").Settings
    path = settings.model_fields["WEBHOOK_PATH"].default
    secret = secrets.token_hex(24)
    ports = [free_port() for _ in range(INSTANCES)]
    proxy = NginxProxy(ports)
    try:
        proxy.start()
    except (RuntimeError, OSError) as error:
        pytest.fail(f"Could not start nginx: {error}", pytrace=False)
    env = {
        "RUN_MODE": "webhook",
        "WEBHOOK_BASE_URL": proxy.url,
        "WEBHOOK_SECRET": secret,
        "WEBHOOK_LISTEN_HOST": "127.0.0.1",
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": database_url,
        "RATE_LIMIT_SECONDS": "60",
        "ANALYTICS_FLUSH_SECONDS": "0.1",
        "LOG_LEVEL": "DEBUG",
    }

    def instance(port: int) -> BotProcess:
        return BotProcess(
            bot_module,
            request.config.rootpath,
            fake_api,
            env | {"WEBHOOK_LISTEN_PORT": str(port)},
            start_timeout=120,  # three interpreters importing aiogram on a busy machine
        )

    bots = [instance(port) for port in ports]
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(proxy.cleanup)
        for bot in bots:
            stack.push_async_callback(_stop_if_running, bot)
        started = await asyncio.gather(*(bot.start() for bot in bots), return_exceptions=True)
        failed = [result for result in started if isinstance(result, BaseException)]
        if failed:
            raise failed[0]

        # Telegram knows the proxy's URL and the secret; polling is over for this token.
        info = fake_api.webhook.info()
        assert info["url"].startswith(f"{proxy.url}{path}?"), info
        assert fake_api.webhook.webhook is not None
        assert fake_api.webhook.webhook.secret_token == secret
        assert "message" in info["allowed_updates"]
        assert "my_chat_member" in info["allowed_updates"]  # the audience router asks for it
        set_calls = len(fake_api.calls("setWebhook"))
        assert 1 <= set_calls <= INSTANCES

        # 1. Thirty users, one /start each: every update handled by exactly one instance.
        users = range(5001, 5031)
        ids = start_each(fake_api, users)
        await settle(fake_api, bots, ids)
        counts = handled_by(bots)
        total = sum(counts, Counter())
        assert {i: total[i] for i in ids} == dict.fromkeys(ids, 1), "an update handled twice"
        assert sum(1 for c in counts if set(c) & ids) >= 2, "the proxy used one instance only"
        per_start = replies(fake_api, 5001)
        assert per_start >= 1
        assert all(replies(fake_api, u) == per_start for u in users)

        # 2. One user floods every instance: one answer and one warning, as from one process.
        flood = {int(fake_api.push_message("/start", user_id=6001)["update_id"]) for _ in range(12)}
        await settle(fake_api, bots, flood)
        assert sum(1 for c in handled_by(bots) if set(c) & flood) >= 2
        assert replies(fake_api, 6001) == per_start + 1, "the rate limit held per instance"

        # 3. Wrong or missing secret: 401 at the proxy and at an instance, nothing handled.
        eve = {"id": 7001, "is_bot": False, "first_name": "Eve"}
        command = {"type": "bot_command", "offset": 0, "length": 6}
        message = {"message_id": 1, "date": int(time.time()), "text": "/start"}
        message |= {"from": eve, "chat": {"id": 7001, "type": "private"}, "entities": [command]}
        forged = {"update_id": 900001, "message": message}
        for url in (f"{proxy.url}{path}", f"http://127.0.0.1:{ports[0]}{path}"):
            for wrong in ("x" * len(secret), None, ""):
                assert await post(url, forged, wrong) == 401
        await asyncio.sleep(1)
        assert all(900001 not in c for c in handled_by(bots))
        assert replies(fake_api, 7001) == 0
        assert not await fetch(database_url, "SELECT 1 FROM shared.users WHERE telegram_id = 7001")

        # 4. One instance killed: the others answer everything. Its replacement (started now,
        # checked at the end) finds the webhook set and does not set it again.
        await bots[0].stop(signal.SIGKILL)
        replacement = instance(ports[0])
        stack.push_async_callback(_stop_if_running, replacement)
        restarting = asyncio.create_task(replacement.start())
        survivors = bots[1:]
        ids = start_each(fake_api, range(5101, 5116))
        await settle(fake_api, survivors, ids)
        assert all(replies(fake_api, u) == per_start for u in range(5101, 5116))

        # 5. Redis stopped: still answering (memory fallback, logged); restarted: shared again.
        redis_server.stop()
        ids = start_each(fake_api, range(5201, 5211))
        await settle(fake_api, survivors, ids)
        assert all(replies(fake_api, u) == per_start for u in range(5201, 5211))
        assert any("Redis unavailable" in bot.output for bot in survivors)
        redis_server.start()
        ids = start_each(fake_api, range(5301, 5331))
        await settle(fake_api, survivors, ids)
        assert all(replies(fake_api, u) == per_start for u in range(5301, 5331))
        assert any("Redis reachable again" in bot.output for bot in survivors)
        assert all(bot.returncode is None for bot in survivors), "an instance crashed"

        await restarting
        assert "Webhook already set to" in replacement.output
        assert len(fake_api.calls("setWebhook")) == set_calls
        bots = [replacement, *survivors]
        ids = start_each(fake_api, range(5401, 5431))
        await settle(fake_api, bots, ids)
        assert sum(1 for c in handled_by(bots) if set(c) & ids) >= 2

        # Stopping every instance leaves the webhook in place (shared by all of them).
        codes = await asyncio.gather(*(bot.stop() for bot in bots))
        assert codes == [0] * INSTANCES, [bot.output[-3000:] for bot in bots]
        assert not fake_api.calls("deleteWebhook")
        assert fake_api.webhook.info()["url"].startswith(proxy.url)


async def _stop_if_running(bot: BotProcess) -> None:
    if bot.pid is not None and bot.returncode is None:
        await bot.stop()
