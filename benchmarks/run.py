"""Benchmark: the generated bot against a bare aiogram bot and the seed's way of doing analytics.

    python benchmarks/run.py            # full run, ~4-5 minutes on 2 cores
    python benchmarks/run.py --quick    # ~1 minute smoke run
    python benchmarks/run.py --json results.json

Renders a bot from this repository (``copier copy`` of HEAD plus uncommitted changes), starts a
throwaway PostgreSQL (or a fresh database in ``TEST_DATABASE_URL``) and the rendered bot's fake Bot
API server, then measures, in interleaved rounds: /start throughput of three bot processes (the
generated bot with every middleware and analytics on, ``bare_bot.py``, ``seed_bot.py``), their idle
memory, analytics ingest (per-row INSERT against the batched ``Analytics`` path) and the memory of
the rate limiter at 1,000,000 distinct users. Prints a table with the targets (PASS/MISS) and
exits non-zero only when something crashed or an event of the generated bot is missing from the
database. See benchmarks/README.md.
"""

from __future__ import annotations

import asyncio
import compileall
import contextlib
import shutil
import signal
import sys
import tempfile
import traceback
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

if __package__ in (
    None,
    "",
):  # `python benchmarks/run.py`: make `benchmarks` and `devkit` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.config import BENCH_DIR, PACKAGE, RATE_LIMIT_SECONDS, Config, parse_args
from benchmarks.ingest import ingest
from benchmarks.limiter import limiter_memory
from benchmarks.machine import machine_info
from benchmarks.rendered_bot import fetchval, load_rendered_bot, postgres_server, render
from benchmarks.report import report
from benchmarks.results import Results, progress
from benchmarks.throughput import Variant, throughput


async def run_all(config: Config, work: Path, res: Results) -> None:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)  # clean up on SIGTERM as well

    progress(f"rendering {config.renders} bot(s) with copier copy")
    bot_dir = work / "render-1" / "bot"
    for i in range(config.renders):
        dst = work / f"render-{i + 1}" / "bot"
        res.render_seconds.append(render(dst))  # blocking: nothing else runs yet
        if i:
            shutil.rmtree(dst.parent, ignore_errors=True)
    progress(f"render: {', '.join(f'{s:.2f} s' for s in res.render_seconds)}")

    baseline_dir = work / "baselines"
    baseline_dir.mkdir()
    for name in ("bare_bot.py", "seed_bot.py"):
        shutil.copy2(BENCH_DIR / name, baseline_dir / name)
    for directory in (bot_dir, baseline_dir):  # no bytecode compiling inside a timed round
        compileall.compile_dir(directory, quiet=1)

    rendered = load_rendered_bot(bot_dir)
    async with contextlib.AsyncExitStack() as stack:
        admin_url = await stack.enter_async_context(
            postgres_server(rendered.postgres, rendered.db, res)
        )
        db_url = await stack.enter_async_context(
            rendered.postgres.temporary_database(admin_url, prefix="bench", migrated=True)
        )
        res.machine["postgresql"] = str(await fetchval(db_url, "SHOW server_version"))
        api = rendered.fake_bot_api.FakeBotAPI()
        await api.start()
        stack.push_async_callback(api.stop)

        generated_env = {
            "DATABASE_URL": db_url,
            "ENABLE_ANALYTICS": "true",
            "RATE_LIMIT_SECONDS": RATE_LIMIT_SECONDS,
            # ANALYTICS_CHANNEL_ID stays unset (BotProcess strips it from the environment).
        }
        variants = {
            "bare": Variant("bare", "bare_bot", baseline_dir, {}),
            "seed": Variant("seed", "seed_bot", baseline_dir, {"DATABASE_URL": db_url}),
            "generated": Variant("generated", PACKAGE, bot_dir, generated_env),
        }
        metrics_port = int(rendered.postgres.free_port())
        variants["metrics"] = Variant(
            "metrics",
            PACKAGE,
            bot_dir,
            generated_env | {"METRICS_PORT": str(metrics_port)},
            metrics_port=metrics_port,
        )
        progress(
            f"throughput: {config.rounds} round(s) x (bare, seed, generated, metrics on),"
            f" {config.updates} /start from {config.users} users each"
        )
        await throughput(rendered, api, variants, config, db_url, res)

        progress(f"ingest: {config.ingest_rounds} round(s) x {config.ingest_rows} rows")
        await ingest(rendered, admin_url, config, res)

    progress(f"rate limiter memory at {config.limiter_users:,} distinct users")
    res.limiter = await limiter_memory(rendered, config)


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(sys.argv[1:] if argv is None else argv)
    res = Results(machine=machine_info())
    res.config = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()}
    work = Path(tempfile.mkdtemp(prefix="bot-bench-"))
    try:
        asyncio.run(run_all(config, work, res))
    except (Exception, KeyboardInterrupt, asyncio.CancelledError) as error:  # noqa: BLE001 - reported, exit 1
        traceback.print_exc()
        res.problems.append(f"crashed: {type(error).__name__}: {str(error)[:500]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(res, config)
    return 1 if res.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
