"""Benchmark: a broadcast sent by the template's runtime through the fake Bot API.

    python benchmarks/broadcast.py                     # 10,000 recipients: ~9 min (400 s at 25/s)
    python benchmarks/broadcast.py --recipients 2000   # ~2 min
    python benchmarks/broadcast.py --json out.json

The template's own runtime (``template/ecosystem_shared``) builds a bot in this process, with a
real PostgreSQL (a throwaway cluster, or ``TEST_DATABASE_URL``) and the test kit's fake Bot API
in another thread. A job for N recipients is created as the command line does, and the bot's
``BroadcastSender`` sends it in the bot's event loop, as a running bot does. Two runs:

- ``BROADCAST_RATE=25`` against a fake that enforces Telegram's published limits (about 30
  messages per second per bot, 1 per second per chat: core.telegram.org/bots/faq, read
  2026-12-05) with 429s: the achieved rate, and whether any 429 came;
- ``BROADCAST_RATE=100`` against a fake without limits: how close the sender gets to its pace.

Figures per run: achieved rate (delivered messages / seconds between the first and the last, as
the fake saw them) against ``BROADCAST_RATE``; database statements per 1,000 messages (asyncpg's
query logger on every connection the sender takes; BEGIN/COMMIT not counted); CPU of the bot's
thread per 1,000 messages (``time.thread_time``: the fake server's thread is not counted); reply
latency to other users' messages (p50/p95 of ``Dispatcher.feed_raw_update`` for a message
answered through the fake, one every 0.5 s) during the broadcast against idle (the same bot,
no job).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/broadcast.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg

from benchmarks.metrics_overhead import echo_router, serve_fake_api, update
from devkit.testkit import shared_module

config = shared_module("config")
runtime = shared_module("runtime")
telegram = shared_module("telegram")
store = shared_module("broadcast_store")
message_module = shared_module("broadcast_message")
postgres = shared_module("testing.postgres")

BOT = "Broadcast benchmark"
FIRST_RECIPIENT = 10_000_000
FIRST_TALKER = 1_000_000
TALK_EVERY = 0.5  # seconds between two messages from other users (2/s: a busy bot's replies)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class StatementCounter:
    """Counts the statements of every connection the sender acquires."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, record: Any) -> None:
        self.count += 1


async def seed(url: str, bot_name: str, recipients: int, first: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table(
            "bot_audience",
            schema_name="shared",
            columns=["bot_name", "telegram_id", "first_seen", "last_seen"],
            records=[(bot_name, user, _now(), _now()) for user in range(first, first + recipients)],
        )
    finally:
        await conn.close()


def _now() -> datetime:
    return datetime.now(UTC)


async def talk(dp: Any, bot: Any, api: Any, first: int, stop: asyncio.Event) -> list[float]:
    """Other users' messages, one every TALK_EVERY s until ``stop``: seconds each took."""
    latencies: list[float] = []
    user = first
    while not stop.is_set():
        started = time.perf_counter()
        await dp.feed_raw_update(bot, update(api, user))
        latencies.append(time.perf_counter() - started)
        user += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), TALK_EVERY)
    return latencies


async def one_run(
    api: Any, url: str, rate: float, recipients: int, first: int, limits: bool, idle: float
) -> dict[str, Any]:
    api.send_log.clear()
    if limits:
        api.set_flood_control(per_second=30, per_chat_per_second=1, retry_after=1)
    else:
        api.set_flood_control()
    bot_name = f"{BOT} {rate:g}"  # one audience per run
    await seed(url, bot_name, recipients, first)
    settings = config.SharedSettings(
        BOT_TOKEN=api.token,
        BOT_NAME=bot_name,
        TELEGRAM_API_BASE_URL=api.base_url,
        DATABASE_URL=url,
        HEALTH_FILE=None,
        RATE_LIMIT_SECONDS=0.001,
        BROADCAST_RATE=rate,
        DB_POOL_MAX_SIZE=5,
    )
    bot = telegram.build_bot(settings)
    services = runtime.build_services(settings, bot)
    counter = StatementCounter()
    services.broadcasts.db = _CountedDb(services.db, counter)
    services.broadcasts.poll_seconds = 0.2
    dp = runtime.build_dispatcher(services, [echo_router()])
    await services.db.start()
    await services.analytics.start()
    try:
        talker = FIRST_TALKER + first  # distinct users per run
        await dp.feed_raw_update(bot, update(api, talker - 1))  # warm-up
        stop = asyncio.Event()
        idle_task = asyncio.create_task(talk(dp, bot, api, talker, stop))
        await asyncio.sleep(idle)
        stop.set()
        idle_latency = await idle_task

        async with services.db.acquire() as conn:
            message = message_module.BroadcastMessage("<b>Benchmark</b> broadcast")
            job_id, total = await store.create_job(conn, bot_name, message, store.AudienceFilter())
            await store.start_job(conn, job_id)
        stop = asyncio.Event()
        busy_task = asyncio.create_task(talk(dp, bot, api, talker + 100_000, stop))
        cpu = time.thread_time()
        wall = time.perf_counter()
        sender = asyncio.create_task(services.broadcasts.run())
        while True:
            await asyncio.sleep(0.5)
            async with services.db.acquire() as conn:
                job = await store.get_job(conn, job_id)
            if job.state == "done":
                break
        cpu = time.thread_time() - cpu
        wall = time.perf_counter() - wall
        stop.set()
        busy_latency = await busy_task
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
    finally:
        await services.analytics.close()
        await services.db.close()
        await bot.session.close()
    deliveries = [
        send
        for send in api.send_log.select("sendMessage", delivered=True)
        if isinstance(send.chat_id, int) and first <= send.chat_id < first + recipients
    ]
    times = sorted(send.time for send in deliveries)
    achieved = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    duplicates = len(deliveries) - len({send.chat_id for send in deliveries})
    return {
        "broadcast_rate": rate,
        "fake_limits": limits,
        "recipients": total,
        "sent": job.sent,
        "unknown": job.unknown,
        "duplicates": duplicates,
        "refused_429": api.flood.refused if api.flood is not None else 0,
        "seconds": wall,
        "achieved_rate": achieved,
        "achieved_ratio": achieved / rate,
        "statements_per_1000": counter.count / job.sent * 1000,
        "cpu_ms_per_1000": cpu / job.sent * 1e6,
        "reply_p50_ms": {
            "idle": percentile(idle_latency, 0.5) * 1e3,
            "broadcast": percentile(busy_latency, 0.5) * 1e3,
        },
        "reply_p95_ms": {
            "idle": percentile(idle_latency, 0.95) * 1e3,
            "broadcast": percentile(busy_latency, 0.95) * 1e3,
        },
        "replies_measured": {"idle": len(idle_latency), "broadcast": len(busy_latency)},
    }


class _CountedDb:
    """The bot's Database as the sender sees it, counting statements (the rest passes through)."""

    def __init__(self, db: Any, counter: StatementCounter) -> None:
        self._db = db
        self._counter = counter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    @contextlib.asynccontextmanager
    async def acquire(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with self._db.acquire(*args, **kwargs) as conn:
            conn.add_query_logger(self._counter)
            try:
                yield conn
            finally:
                conn.remove_query_logger(self._counter)


@contextlib.asynccontextmanager
async def database() -> AsyncIterator[str]:
    url = postgres.server_url()
    server = None
    if not url:
        server = postgres.PostgresServer()
        server.start()
        url = str(server.url)
    try:
        async with postgres.temporary_database(url, prefix="bench", migrated=True) as db_url:
            yield db_url
    finally:
        if server is not None:
            server.cleanup()


async def measure(recipients: int, idle: float) -> dict[str, Any]:
    api = serve_fake_api()
    runs = []
    async with database() as url:
        for n, (rate, limits) in enumerate(((25.0, True), (100.0, False))):
            first = FIRST_RECIPIENT * (n + 1)
            print(f"BROADCAST_RATE={rate:g}, fake limits {limits}: {recipients} recipients ...")
            result = await one_run(api, url, rate, recipients, first, limits, idle)
            print(json.dumps(result, indent=1))
            runs.append(result)
    return {"recipients": recipients, "runs": runs}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A broadcast through the fake Bot API.")
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="idle latency sampling")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.recipients, args.idle_seconds))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
