"""Benchmark: what a bot's metrics cost per update, measured without the machine's noise.

    python benchmarks/metrics_overhead.py              # ~1 min: 7 rounds x 2,000 updates each way
    python benchmarks/metrics_overhead.py --json out.json

The template's own runtime (``template/ecosystem_shared``) builds the same bot twice, metrics off
(``METRICS_PORT=0``: nothing wired in) and on (``METRICS_PORT`` set: every middleware and the
session's request metrics; ``/metrics`` rendered every ``--scrape-every`` updates, far more often
than Prometheus's 15 s would at this rate). Each update, a message from a distinct user, goes
through ``Dispatcher.feed_raw_update`` to a handler answering it through the Bot API, served by
the test kit's fake Bot API in another thread. The CPU time of the bot's thread alone
(``time.thread_time``) is compared, so neither the fake server nor other processes on a busy
machine count. Rounds alternate the order; the figures are medians over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/metrics_overhead.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiogram import Router
from aiogram.types import Message

from devkit.testkit import shared_module

config = shared_module("config")
runtime = shared_module("runtime")
telegram = shared_module("telegram")
fake_bot_api = shared_module("testing.fake_bot_api")

FIRST_USER = 1_000_000


def serve_fake_api() -> Any:
    """A FakeBotAPI on its own event loop in a daemon thread; returns it once it listens."""
    started: Future[Any] = Future()

    def run() -> None:
        loop = asyncio.new_event_loop()
        api = fake_bot_api.FakeBotAPI()
        loop.run_until_complete(api.start())
        started.set_result(api)
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    return started.result(timeout=30)


def echo_router() -> Router:
    router = Router(name="echo")

    @router.message()
    async def echo(message: Message) -> None:
        await message.answer("ok")

    return router


def update(api: Any, user_id: int) -> dict[str, Any]:
    return {
        "update_id": user_id,
        "message": {
            "message_id": user_id,
            "date": 1_700_000_000,
            "chat": api.chat(user_id, "private"),
            "from": api.user(user_id),
            "text": "hello",
        },
    }


async def one_round(api: Any, on: bool, updates: int, scrape_every: int, first: int) -> float:
    """CPU seconds of this thread for ``updates`` updates handled end to end."""
    settings = config.SharedSettings(
        BOT_TOKEN=api.token,
        TELEGRAM_API_BASE_URL=api.base_url,
        HEALTH_FILE=None,
        RATE_LIMIT_SECONDS=0.001,  # the limiter's full path, as in benchmarks/run.py
        METRICS_PORT=9 if on else 0,  # never bound: run_services is not called
        BOT_SLUG="overhead",
    )
    bot = telegram.build_bot(settings)
    try:
        services = runtime.build_services(settings, bot)
        assert services.metrics.collecting == on
        dp = runtime.build_dispatcher(services, [echo_router()])
        await dp.feed_raw_update(bot, update(api, first - 1))  # warm-up: connection, caches
        cpu = time.thread_time()
        for n in range(updates):
            await dp.feed_raw_update(bot, update(api, first + n))
            if on and (n + 1) % scrape_every == 0:
                services.metrics.render()
        return time.thread_time() - cpu
    finally:
        await bot.session.close()


async def measure(rounds: int, updates: int, scrape_every: int) -> dict[str, Any]:
    api = serve_fake_api()
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    user = FIRST_USER
    for n in range(rounds):
        order = ("off", "on") if n % 2 == 0 else ("on", "off")
        for name in order:
            seconds = await one_round(api, name == "on", updates, scrape_every, user)
            user += updates + 1
            cpu[name].append(seconds / updates * 1e6)
            print(f"round {n + 1}/{rounds} metrics {name:>3}: {cpu[name][-1]:.0f} us per update")
    ratios = [on / off for off, on in zip(cpu["off"], cpu["on"], strict=True)]
    return {
        "updates_per_round": updates,
        "scrape_every": scrape_every,
        "cpu_us_per_update": {name: statistics.median(values) for name, values in cpu.items()},
        "cpu_ratio_on_off": statistics.median(ratios),
        "cpu_ratio_range": [min(ratios), max(ratios)],
        "throughput_ratio_on_off": 1 / statistics.median(ratios),
        "rounds": cpu,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="CPU per update with metrics off and on.")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--scrape-every", type=int, default=500, help="updates per /metrics")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.rounds, args.updates, args.scrape_every))
    cpu = result["cpu_us_per_update"]
    low, high = result["cpu_ratio_range"]
    print(
        f"CPU per update (bot thread, median of {args.rounds} rounds): off {cpu['off']:.0f} us,"
        f" on {cpu['on']:.0f} us; on/off {result['cpu_ratio_on_off']:.3f}x"
        f" (rounds {low:.3f}-{high:.3f}); throughput bound by this CPU:"
        f" {result['throughput_ratio_on_off']:.3f}x (target >= 0.95x)"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
