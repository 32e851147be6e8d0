"""Benchmark: the generated bot against a bare aiogram bot and the seed's way of doing analytics.

    python benchmarks/run.py            # full run, ~4-5 minutes on 2 cores
    python benchmarks/run.py --quick    # ~1 minute smoke run
    python benchmarks/run.py --json results.json
    python benchmarks/run.py --refs 104b905 HEAD   # the generated bot of two versions

Renders a bot from this repository (``copier copy`` of HEAD plus uncommitted changes), starts a
throwaway PostgreSQL (or a fresh database in ``TEST_DATABASE_URL``) and the rendered bot's fake Bot
API server, then measures, in interleaved rounds: /start throughput of three bot processes (the
generated bot with every middleware and analytics on, ``bare_bot.py``, ``seed_bot.py``), their idle
memory, analytics ingest (per-row INSERT against the batched ``Analytics`` path) and the memory of
the rate limiter at 1,000,000 distinct users. Prints a table with the targets (PASS/MISS) and
exits non-zero only when something crashed or an event of the generated bot is missing from the
database. ``--refs`` renders the generated bot from each git ref instead and runs them beside
``bare_bot.py`` (order reversing every round), reporting each ref's figures and the medians of
its per-round ratios to the last ref. See benchmarks/README.md.
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
from typing import Any

if __package__ in (
    None,
    "",
):  # `python benchmarks/run.py`: make `benchmarks` and `devkit` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.config import (
    BENCH_DIR,
    PACKAGE,
    RATE_LIMIT_SECONDS,
    Config,
    parse_args,
    ref_variant,
)
from benchmarks.ingest import ingest
from benchmarks.limiter import limiter_memory
from benchmarks.machine import machine_info
from benchmarks.refs import alternating, ref_dir, resolve
from benchmarks.rendered_bot import (
    RenderedBot,
    fetchval,
    load_rendered_bot,
    postgres_server,
    render,
)
from benchmarks.report import report
from benchmarks.results import Results, progress
from benchmarks.throughput import Variant, throughput


def render_tree(config: Config, work: Path, res: Results) -> Path:
    """The working tree rendered ``config.renders`` times (timed); the first render's path."""
    progress(f"rendering {config.renders} bot(s) with copier copy")
    for i in range(config.renders):
        dst = work / f"render-{i + 1}" / "bot"
        res.render_seconds.append(render(dst))  # blocking: nothing else runs yet
        if i:
            shutil.rmtree(dst.parent, ignore_errors=True)
    progress(f"render: {', '.join(f'{s:.2f} s' for s in res.render_seconds)}")
    return work / "render-1" / "bot"


def render_refs(config: Config, work: Path, res: Results) -> dict[str, Path]:
    """Each ref rendered ``config.renders`` times, refs alternating; the first renders' paths."""
    progress(f"rendering {', '.join(config.refs)} {config.renders} time(s) each with copier copy")
    res.ref_render_seconds = {ref: [] for ref in config.refs}
    for i in range(config.renders):
        for ref in alternating(config.refs, i):
            res.ref_render_seconds[ref].append(render(work / f"render-{i + 1}", ref))
        if i:
            shutil.rmtree(work / f"render-{i + 1}", ignore_errors=True)
    for ref, seconds in res.ref_render_seconds.items():
        progress(f"render {ref}: {', '.join(f'{s:.2f} s' for s in seconds)}")
    return {ref: ref_dir(work / "render-1", ref) for ref in config.refs}


async def compare_refs(
    rendered: RenderedBot,
    api: Any,
    bare: Variant,
    bot_dirs: dict[str, Path],
    generated_env: dict[str, str],
    config: Config,
    db_url: str,
    res: Results,
) -> None:
    """--refs: bare_bot.py and the generated bot of each ref, all in one order that reverses
    every round. Ingest and the rate limiter run in this process with one render's modules,
    so they are not compared (see benchmarks/README.md)."""
    variants = {"bare": bare} | {
        ref_variant(ref): Variant(ref_variant(ref), PACKAGE, path, generated_env)
        for ref, path in bot_dirs.items()
    }
    progress(
        f"throughput: {config.rounds} round(s) x ({', '.join(variants)}),"
        f" {config.updates} /start from {config.users} users each"
    )
    await throughput(
        rendered, api, variants, config, db_url, res, order=lambda n: alternating(list(variants), n)
    )


async def run_all(config: Config, work: Path, res: Results) -> None:
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)  # clean up on SIGTERM as well

    if config.refs:
        bot_dirs = render_refs(config, work, res)
        # The driver (fake Bot API, BotProcess, PostgreSQL) is the last ref's test kit.
        bot_dir = bot_dirs[config.refs[-1]]
    else:
        bot_dir = render_tree(config, work, res)
        bot_dirs = {"HEAD": bot_dir}

    baseline_dir = work / "baselines"
    baseline_dir.mkdir()
    for name in ("bare_bot.py", "seed_bot.py"):
        shutil.copy2(BENCH_DIR / name, baseline_dir / name)
    for directory in (*bot_dirs.values(), baseline_dir):  # no compiling inside a timed round
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
        bare = Variant("bare", "bare_bot", baseline_dir, {})
        if config.refs:
            await compare_refs(rendered, api, bare, bot_dirs, generated_env, config, db_url, res)
            return
        variants = {
            "bare": bare,
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
    if config.refs:
        res.refs = resolve(config.refs)  # an unknown ref stops the run before anything starts
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
