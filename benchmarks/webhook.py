"""Benchmark: updates per second of the generated bot, polling against webhook mode.

    python benchmarks/webhook.py              # 3 interleaved rounds, ~4 minutes on 2 cores
    python benchmarks/webhook.py --quick      # 1 round, ~1.5 minutes
    python benchmarks/webhook.py --json out.json

Renders a bot (benchmarks/run.py's ``render``), starts PostgreSQL as run.py does, a real
``redis-server`` and ``nginx`` (the rendered test kit's ``RedisServer`` and ``NginxProxy``), and
measures in interleaved rounds, each with a fresh fake Bot API:

- ``polling``: one ``python -m benchmark_bot`` long-polling (the default mode);
- ``webhook x1``: one instance in webhook mode behind nginx, state in memory;
- ``webhook x1, 100 conn``: the same with ``WEBHOOK_MAX_CONNECTIONS=100`` (Telegram's maximum);
- ``webhook x1 + Redis``: the same with ``REDIS_URL`` (FSM, per-user locks, rate limits in Redis);
- ``webhook x3 + Redis``: three instances behind nginx sharing Redis (production's replicas).

Each round pushes N /start updates from U users at once and times from the push to the N-th
reply recorded by the fake server, as run.py does. The fake delivers webhook updates the way
Telegram does (``max_connections`` concurrent POSTs, default 40). Everything shares the
machine's cores: with 2 cores, three instances cannot triple anything; the figures say what
the replicas cost or gain on this machine, to compare within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/webhook.py`: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.config import PACKAGE, RATE_LIMIT_SECONDS
from benchmarks.machine import cpu_seconds, machine_info
from benchmarks.rendered_bot import RenderedBot, load_rendered_bot, postgres_server, render
from benchmarks.results import Results as BenchResults
from benchmarks.results import progress
from benchmarks.throughput import (
    force_stop,
    output_errors,
    start_process,
    wait_replies,
)

FIRST_USER_ID = 6_200_000_000
WARMUP_USER_ID = FIRST_USER_ID - 1


@dataclass(frozen=True)
class Variant:
    name: str
    instances: int
    webhook: bool
    redis: bool
    max_connections: int = 40  # Telegram's default, and WEBHOOK_MAX_CONNECTIONS's


VARIANTS = (
    Variant("polling", 1, webhook=False, redis=False),
    Variant("webhook x1", 1, webhook=True, redis=False),
    Variant("webhook x1, 100 conn", 1, webhook=True, redis=False, max_connections=100),
    Variant("webhook x1 + Redis", 1, webhook=True, redis=True),
    Variant("webhook x3 + Redis", 3, webhook=True, redis=True),
)


@dataclass
class Results:
    machine: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


async def one_round(
    rendered: RenderedBot,
    servers: ModuleType,
    variant: Variant,
    db_url: str,
    redis_url: str,
    updates: int,
    users: int,
) -> dict[str, Any]:
    ports = [servers.free_port() for _ in range(variant.instances)]
    proxy = servers.NginxProxy(ports) if variant.webhook else None
    env = {"DATABASE_URL": db_url, "RATE_LIMIT_SECONDS": RATE_LIMIT_SECONDS}
    env["ANALYTICS_FLUSH_SECONDS"] = "0.2"
    if proxy is not None:
        proxy.start()
        env |= {"RUN_MODE": "webhook", "WEBHOOK_BASE_URL": proxy.url}
        env |= {"WEBHOOK_SECRET": secrets.token_hex(24), "WEBHOOK_LISTEN_HOST": "127.0.0.1"}
        env["WEBHOOK_MAX_CONNECTIONS"] = str(variant.max_connections)
    if variant.redis:
        env["REDIS_URL"] = redis_url
    processes: list[Any] = []
    try:
        async with rendered.fake_bot_api.FakeBotAPI() as api:
            for port in ports:
                extra = {"WEBHOOK_LISTEN_PORT": str(port)} if variant.webhook else {}
                processes.append(
                    rendered.bot_process.BotProcess(
                        PACKAGE, rendered.bot_dir, api, env=env | extra, start_timeout=120.0
                    )
                )
            await asyncio.gather(*(start_process(p) for p in processes))
            api.push_message("/start", user_id=WARMUP_USER_ID, first_name="Warmup")
            await api.wait_for_call("sendMessage", timeout=60.0, chat_id=WARMUP_USER_ID)
            await asyncio.sleep(1.0)
            api.clear_calls()
            chats = {FIRST_USER_ID + k for k in range(users)}
            for k in range(updates):
                api.push_message("/start", user_id=FIRST_USER_ID + k % users)
            cpu_before = sum(cpu_seconds(p.pid) for p in processes)
            runner_before = time.process_time()
            pushed = time.monotonic()
            replies = await wait_replies(
                rendered, api, processes[0], chats, updates, timeout=max(120.0, updates / 5)
            )
            elapsed = max(float(call.time) for call in replies) - pushed
            cpu = sum(cpu_seconds(p.pid) for p in processes) - cpu_before
            runner_cpu = time.process_time() - runner_before
            codes = await asyncio.gather(*(p.stop(signal.SIGTERM, 30.0) for p in processes))
            if any(codes):
                raise RuntimeError(f"{variant.name}: exit codes {codes}")
            errors = [line for p in processes for line in output_errors(p.output)]
    finally:
        for process in processes:
            await force_stop(process)
        if proxy is not None:
            proxy.cleanup()
    return {
        "variant": variant.name,
        "updates": updates,
        "seconds": elapsed,
        "updates_per_s": updates / elapsed,
        "bot_cpu_us_per_update": cpu / updates * 1e6,
        # The fake Bot API (Telegram's side) runs in this process: near 1.0, it is the limit.
        "fake_api_cpu_share": runner_cpu / elapsed,
        "error_lines": errors,
    }


async def run_all(args: argparse.Namespace, work: Path, res: Results) -> None:
    progress("rendering the bot")
    render(work / "bot")
    rendered = load_rendered_bot(work / "bot")
    servers = importlib.import_module("ecosystem_shared.testing.servers")
    redis = servers.RedisServer()
    redis.start()
    try:
        async with contextlib.AsyncExitStack() as stack:
            admin_url = await stack.enter_async_context(
                postgres_server(rendered.postgres, rendered.db, BenchResults())
            )
            db_url = await stack.enter_async_context(
                rendered.postgres.temporary_database(
                    admin_url, prefix="bench_webhook", migrated=True
                )
            )
            for round_no in range(args.rounds):
                for variant in VARIANTS:
                    progress(f"round {round_no + 1}/{args.rounds}: {variant.name}")
                    await redis_flush(redis.url)
                    result = await one_round(
                        rendered, servers, variant, db_url, redis.url, args.updates, args.users
                    )
                    result["round"] = round_no + 1
                    res.rounds.append(result)
    finally:
        redis.cleanup()


async def redis_flush(url: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        await client.flushall()
    finally:
        await client.aclose()


def summarize(res: Results) -> list[tuple[str, float, float, float, float]]:
    """Per variant: median updates/s, its ratio to polling, median bot CPU µs per update (all
    instances), median share of one core the fake Bot API used."""
    rows = []
    medians: dict[str, float] = {}
    for variant in VARIANTS:
        runs = [r for r in res.rounds if r["variant"] == variant.name]
        if not runs:
            continue
        medians[variant.name] = statistics.median(r["updates_per_s"] for r in runs)
        cpu = statistics.median(r["bot_cpu_us_per_update"] for r in runs)
        fake = statistics.median(r["fake_api_cpu_share"] for r in runs)
        rows.append((variant.name, medians[variant.name], cpu, fake))
    polling = medians.get("polling")
    return [
        (name, ups, ups / polling if polling else float("nan"), cpu, fake)
        for name, ups, cpu, fake in rows
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=2000, help="/start updates per round")
    parser.add_argument("--users", type=int, default=200, help="distinct users sending them")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--quick", action="store_true", help="1 round of 1000 updates")
    parser.add_argument("--json", type=Path, default=None, help="write every figure as JSON")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.quick:
        args.rounds, args.updates = 1, 1000
    res = Results(machine=machine_info(), config=dict(vars(args)) | {"json": str(args.json)})
    work = Path(tempfile.mkdtemp(prefix="bot-bench-webhook-"))
    try:
        asyncio.run(run_all(args, work, res))
    except (Exception, KeyboardInterrupt) as error:  # noqa: BLE001 - reported, exit 1
        traceback.print_exc()
        res.problems.append(f"crashed: {type(error).__name__}: {str(error)[:500]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{res.machine}")
    print(f"{args.rounds} round(s) of {args.updates} /start from {args.users} users")
    header = f"{'variant':<20} {'updates/s':>9} {'vs polling':>10} {'bot CPU/update':>14}"
    print(f"{header} {'fake API CPU':>12}")
    for name, ups, vs, cpu, fake in summarize(res):
        print(f"{name:<20} {ups:>9.0f} {vs:>9.2f}x {cpu:>11.0f} µs {fake:>11.0%}")
    errors = [line for r in res.rounds for line in r["error_lines"]]
    for line in errors[:20]:
        print(f"bot error: {line}")
    for problem in res.problems:
        print(f"PROBLEM: {problem}")
    if args.json is not None:
        data = {"machine": res.machine, "config": res.config, "rounds": res.rounds}
        args.json.write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    return 1 if res.problems else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())
