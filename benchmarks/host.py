"""Benchmark: ten generated bots as ten processes against the same ten under ``ecosystem_host``.

    python benchmarks/host.py               # ~15 minutes on 2 busy cores
    python benchmarks/host.py --users 200   # lighter traffic
    python benchmarks/host.py --json out.json

Renders ten bots of mixed kinds (text, media with the Local Bot API settings, CRM) and a
host-mode ecosystem from this checkout, starts one fake Bot API server per bot (each bot's
token and URL in its own ``.env``, as in production) and uses PostgreSQL from
``TEST_DATABASE_URL`` (a fresh database per mode) or a throwaway cluster. Then, once per
mode — **separate** (``python -m <package>`` in each bot directory, ten processes) and **host**
(``python -m ecosystem_host`` with the ten directories) — it measures:

- start: from launching the process(es) until every bot has called getUpdates;
- throughput: each bot in turn gets /start from ``--users`` distinct users (1,000) pushed at
  once; updates/s from the push until the last reply reached its fake server;
- memory after the traffic: PSS (``/proc/PID/smaps_rollup``) summed over every bot process
  (host: parent and children), and per bot;
- restart: ``kill -9`` of one bot, then time until it answers a /start again (separate: the
  runner starts the process again at once, as a container restart policy would; host: the
  host's own supervision);
- analytics: after SIGTERM, every /start of every bot must be in ``shared.analytics_events``
  (the killed bot's events were flushed before the kill). A missing event fails the run.

Prints a table with ratios (host / separate) and the issue's targets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/host.py`: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.host_processes import FIRST_USER, Bench, Host, Separate, smaps, start_polling
from benchmarks.host_refs_report import refs_summary, refs_table
from benchmarks.host_report import MIB, ModeResult, interpreter, merged, table
from benchmarks.refs import alternating, ref_dir, resolve
from benchmarks.rendered_bot import fetchval, postgres_server
from benchmarks.results import Results, progress
from devkit.interpreters import bots_venv, find_python
from devkit.render import copy_template

KINDS: tuple[dict[str, Any], ...] = (
    {"mode": "text"},
    {"mode": "media", "local_bot_api": True},
    {"mode": "text", "crm": True},
)


async def run_mode(bench: Bench, mode: str) -> ModeResult:
    result = ModeResult(mode)
    name = f"bench_host_{mode}_{uuid.uuid4().hex[:8]}"
    await fetchval(bench.admin_url, f'CREATE DATABASE "{name}"')
    database_url = bench.postgres_testing.with_database(bench.admin_url, name)
    runner: Separate | Host = Separate(bench) if mode == "separate" else Host(bench)
    for api in bench.apis.values():
        api.clear_calls()
    try:
        bench.write_envs(database_url)
        since = {s: bench.apis[s].poll_count for s in bench.slugs}
        started = time.monotonic()
        await start_polling(bench, runner, since)
        result.start_s = time.monotonic() - started
        progress(f"{mode}: every bot polls after {result.start_s:.1f} s")
        for slug in bench.slugs:  # one warm-up /start each (first user, connections)
            await bench.starts(slug, 1)
        await asyncio.sleep(1)
        result.idle_pss_kib = {label: smaps(pid)["Pss"] for label, pid in runner.pids().items()}
        idle_private = {label: smaps(pid)["Private_Dirty"] for label, pid in runner.pids().items()}
        progress(
            f"{mode}: idle PSS {sum(result.idle_pss_kib.values()) / MIB:.0f} MiB, "
            f"private dirty {idle_private}"
        )
        for slug in bench.slugs:
            seconds = await bench.starts(slug, bench.users)
            result.per_bot_updates_s[slug] = bench.users / seconds
            progress(f"{mode}: {slug} {bench.users / seconds:.0f} updates/s")
        if bench.metrics_port:
            read = await asyncio.to_thread(bench.scrape_all)
            progress(f"{mode}: /metrics of every bot scraped ({read / 1024:.0f} KiB)")
        await asyncio.sleep(2)
        pids = runner.pids()
        rollups = {label: smaps(pid) for label, pid in pids.items()}
        result.pss_kib = {label: r["Pss"] for label, r in rollups.items()}
        result.private_dirty_kib = {label: r["Private_Dirty"] for label, r in rollups.items()}
        progress(f"{mode}: total PSS {result.total_pss_mib:.0f} MiB over {len(pids)} processes")
        victim = bench.slugs[1]
        expected = bench.next_user - FIRST_USER
        deadline = time.monotonic() + 30
        while await bench.stored(database_url) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.2)  # the victim's buffer is flushed before the kill
        killed = time.monotonic()
        await runner.kill_and_restart(victim)
        await bench.starts(victim, 1, timeout=60)
        result.restart_s = time.monotonic() - killed
        progress(f"{mode}: killed {victim} answered again after {result.restart_s:.2f} s")
        for slug in bench.slugs:
            await bench.starts(slug, 1)
        codes = await runner.stop()
        if any(codes):
            raise RuntimeError(f"{mode}: exit codes {codes}")
        result.events_expected = bench.next_user - FIRST_USER
        result.events_stored = await bench.stored(database_url)
    finally:
        with contextlib.suppress(Exception):
            await runner.stop()
        await fetchval(bench.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    bench.next_user = FIRST_USER  # each mode has its own database
    return result


async def side_by_side(
    bench: Bench, fake_bot_api: Any, rounds: int
) -> dict[str, dict[str, list[float]]]:
    """Throughput of both modes at the same time: a second copy of the bots (own tokens, fake
    servers and database) runs under the host while the first runs as ten processes, and each
    bot's bursts alternate between the two, so the machine's drifting load hits both alike."""
    eco2 = bench.eco.parent / "eco-host"
    shutil.copytree(bench.eco, eco2, ignore=shutil.ignore_patterns(".env", ".alive-*", ".host-*"))
    apis2 = {
        s: fake_bot_api.FakeBotAPI(f"{9000 + n}:bench-token-{s}") for n, s in enumerate(bench.slugs)
    }
    for api in apis2.values():
        await api.start()
    other = Bench(
        eco2,
        bench.slugs,
        bench.names,
        bench.packages,
        apis2,
        bench.users,
        bench.admin_url,
        bench.postgres_testing,
        bench.python,
    )
    for api in bench.apis.values():
        api.clear_calls()  # the same user ids again: no reply of an earlier phase may count
    names = {m: f"bench_host_both_{m}_{uuid.uuid4().hex[:8]}" for m in ("separate", "host")}
    for name in names.values():
        await fetchval(bench.admin_url, f'CREATE DATABASE "{name}"')
    urls = {m: bench.postgres_testing.with_database(bench.admin_url, n) for m, n in names.items()}
    benches = {"separate": bench, "host": other}
    runners: dict[str, Separate | Host] = {"separate": Separate(bench), "host": Host(other)}
    speeds: dict[str, dict[str, list[float]]] = {m: {s: [] for s in bench.slugs} for m in benches}
    try:
        for mode, runner in runners.items():
            benches[mode].write_envs(urls[mode])
            since = {s: benches[mode].apis[s].poll_count for s in bench.slugs}
            await start_polling(benches[mode], runner, since)
            for slug in bench.slugs:
                await benches[mode].starts(slug, 1)
        progress("side by side: both modes poll")
        for round_no in range(rounds):
            for slug in bench.slugs:
                order = list(benches) if round_no % 2 == 0 else list(reversed(benches))
                for mode in order:
                    seconds = await benches[mode].starts(slug, bench.users)
                    speeds[mode][slug].append(bench.users / seconds)
                progress(
                    f"side by side {round_no + 1}/{rounds} {slug}: separate"
                    f" {speeds['separate'][slug][-1]:.0f}, host {speeds['host'][slug][-1]:.0f}"
                    " updates/s"
                )
        for mode, runner in runners.items():
            codes = await runner.stop()
            expected = benches[mode].next_user - FIRST_USER
            stored = await benches[mode].stored(urls[mode])
            if any(codes) or stored != expected:
                raise RuntimeError(f"side by side {mode}: exit {codes}, {stored}/{expected} events")
    finally:
        for runner in runners.values():
            with contextlib.suppress(Exception):
                await runner.stop()
        for api in apis2.values():
            await api.stop()
        for name in names.values():
            await fetchval(bench.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    bench.next_user = FIRST_USER
    return speeds


def names_and_packages(slugs: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """Each bot's bot_name and package (the same for every ref)."""
    names = {slug: f"Bench {n + 1}" for n, slug in enumerate(slugs)}
    return names, {slug: slug.replace("-", "_") for slug in slugs}


def render_ecosystem(eco: Path, slugs: Sequence[str], ref: str = "HEAD") -> None:
    """A host-mode ecosystem and its bots, of kinds in turn, from ``ref`` (HEAD: this tree)."""
    progress(f"rendering a host-mode ecosystem and {len(slugs)} bots ({ref})")
    answers = {"project_type": "ecosystem", "bots": ",".join(slugs), "deployment": "host"}
    copy_template(eco, answers, vcs_ref=ref)
    names, _ = names_and_packages(slugs)
    for n, slug in enumerate(slugs):
        answers = {"bot_name": names[slug], "bot_slug": slug, "language": "en"}
        copy_template(eco / slug, answers | KINDS[n % len(KINDS)], vcs_ref=ref)


def bots_python(python: str | None, eco: Path, slugs: Sequence[str], venv: Path) -> str:
    """This interpreter, or a venv from ``--python`` with the bots' dependencies."""
    if python is None:
        return sys.executable
    progress(f"a venv with the bots' dependencies from {python}")
    return bots_venv(find_python(python), eco, slugs, venv)


@contextlib.asynccontextmanager
async def servers(
    bot_dir: Path, slugs: Sequence[str]
) -> AsyncIterator[tuple[Any, Any, dict[str, Any], str]]:
    """The test kit of the bot in ``bot_dir`` (imported from there), one running fake Bot API
    per bot and PostgreSQL: (fake_bot_api module, its postgres module, the APIs, admin URL)."""
    sys.path.insert(0, str(bot_dir))
    fake_bot_api = importlib.import_module("ecosystem_shared.testing.fake_bot_api")
    postgres_testing = importlib.import_module("ecosystem_shared.testing.postgres")
    db = importlib.import_module("ecosystem_shared.db")
    apis = {s: fake_bot_api.FakeBotAPI(f"{8000 + n}:bench-token-{s}") for n, s in enumerate(slugs)}
    for api in apis.values():
        await api.start()
    try:
        async with postgres_server(postgres_testing, db, Results()) as admin_url:
            yield fake_bot_api, postgres_testing, apis, admin_url
    finally:
        for api in apis.values():
            await api.stop()


async def run_all(
    work: Path,
    bots: int,
    users: int,
    modes: Sequence[str],
    rounds: int,
    side_rounds: int,
    python: str | None,
    metrics_port: int = 0,
) -> tuple[list[ModeResult], dict[str, dict[str, list[float]]], str]:
    """Results of each mode, side-by-side speeds, and the interpreter they ran on."""
    eco = work / "eco"
    slugs = [f"bench-{n + 1:02d}" for n in range(bots)]
    render_ecosystem(eco, slugs)
    names, packages = names_and_packages(slugs)
    python = bots_python(python, eco, slugs, work / "venv")
    described = interpreter(python)
    progress(f"bots and host run on {described}")
    async with servers(eco / slugs[0], slugs) as (fake_bot_api, postgres_testing, apis, admin_url):
        bench = Bench(eco, slugs, names, packages, apis, users, admin_url, postgres_testing, python)
        bench.metrics_port = metrics_port
        # Memory, start and restart: each mode alone (PSS splits shared pages between the
        # processes mapping them, so the other mode must not run meanwhile).
        results = [await run_mode(bench, mode) for _ in range(rounds) for mode in modes]
        speeds: dict[str, dict[str, list[float]]] = {}
        if side_rounds:
            try:
                speeds = await side_by_side(bench, fake_bot_api, side_rounds)
            except Exception as error:  # noqa: BLE001 - the sequential figures still count
                progress(
                    f"side by side failed ({type(error).__name__}: {error});"
                    " the table shows the sequential throughput"
                )
        return results, speeds, described


async def run_refs(
    work: Path,
    refs: Sequence[str],
    bots: int,
    users: int,
    rounds: int,
    python: str | None,
    metrics_port: int = 0,
) -> tuple[dict[str, list[ModeResult]], str]:
    """--refs: the host mode of the bots rendered from each ref, ``rounds`` rounds in an order
    that reverses every round; the last ref's test kit drives them all."""
    slugs = [f"bench-{n + 1:02d}" for n in range(bots)]
    names, packages = names_and_packages(slugs)
    ecos = {ref: ref_dir(work, ref) / "eco" for ref in refs}
    for ref, eco in ecos.items():
        render_ecosystem(eco, slugs, ref)
    pythons = {
        ref: bots_python(python, ecos[ref], slugs, ref_dir(work, ref) / "venv") for ref in refs
    }
    for ref, eco in ecos.items():
        # Bytecode written before the first round: a bot directory without __pycache__ makes
        # the host's parent about 2 MiB smaller per bot than every later run (measured on
        # 2026-12-05), which would set round 1 apart from the others.
        subprocess.run([pythons[ref], "-m", "compileall", "-q", str(eco)], check=True)
    described = interpreter(pythons[refs[-1]])
    progress(f"bots and host run on {described}")
    results: dict[str, list[ModeResult]] = {ref: [] for ref in refs}
    async with servers(ecos[refs[-1]] / slugs[0], slugs) as (_, postgres_testing, apis, admin_url):
        benches = {}
        for ref in refs:
            benches[ref] = Bench(
                ecos[ref],
                slugs,
                names,
                packages,
                apis,
                users,
                admin_url,
                postgres_testing,
                pythons[ref],
            )
            benches[ref].metrics_port = metrics_port
        for round_no in range(rounds):
            for ref in alternating(refs, round_no):
                progress(f"round {round_no + 1}/{rounds}: the host of {ref}")
                results[ref].append(await run_mode(benches[ref], "host"))
    return results, described


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Ten bots: separate processes vs one host.")
    parser.add_argument("--bots", type=int, default=10)
    parser.add_argument("--users", type=int, default=1000, help="distinct users per bot")
    parser.add_argument("--rounds", type=int, default=1, help="memory rounds per mode")
    parser.add_argument(
        "--side-rounds", type=int, default=2, help="side-by-side throughput rounds (0: none)"
    )
    parser.add_argument("--modes", default="separate,host", help="(development) modes to run")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=0,
        help="serve every bot's /metrics on this port + its index (scraped once after the"
        " traffic, before memory is read); 0: metrics off, as before",
    )
    parser.add_argument(
        "--python",
        help="a Python to run the bots and the host on (a path, or 3.12 to find one on the PATH"
        " or in pyenv), in a venv made from it with the bots' dependencies (3.12 is the host"
        " image's); default: this interpreter, as it is",
    )
    parser.add_argument(
        "--refs",
        nargs="+",
        metavar="REF",
        help="the host mode only, of the bots rendered from each git ref (HEAD: the working"
        " tree), --rounds rounds in an order reversing every round; ratios to the last ref",
    )
    args = parser.parse_args(argv)
    if args.refs:
        return main_refs(args)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    work = Path(tempfile.mkdtemp(prefix="host-bench-"))
    try:
        results, speeds, described = asyncio.run(
            run_all(
                work,
                args.bots,
                args.users,
                modes,
                args.rounds,
                args.side_rounds,
                args.python,
                args.metrics_port,
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    separate, host = merged(results, "separate"), merged(results, "host")
    if speeds:  # the side-by-side figures replace the sequential ones in the table
        separate.per_bot_updates_s = {
            s: statistics.median(v) for s, v in speeds["separate"].items()
        }
        host.per_bot_updates_s = {s: statistics.median(v) for s, v in speeds["host"].items()}
    if separate.per_bot_updates_s and host.per_bot_updates_s:
        print(table(separate, host, args.bots, args.users, described))
    if args.json:
        dump = {
            "python": described,
            "modes": [asdict(r) for r in results],
            "side_by_side_updates_s": speeds,
        }
        args.json.write_text(json.dumps(dump, indent=2) + "\n")
    lost = any(r.events_stored != r.events_expected for r in results)
    return 1 if lost else 0


def main_refs(args: argparse.Namespace) -> int:
    commits = resolve(args.refs)  # an unknown ref stops the run before anything is rendered
    work = Path(tempfile.mkdtemp(prefix="host-bench-"))
    try:
        results, described = asyncio.run(
            run_refs(
                work, args.refs, args.bots, args.users, args.rounds, args.python, args.metrics_port
            )
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = refs_summary(results)
    print(refs_table(summary, commits, args.bots, args.users, args.rounds, described))
    if args.json:
        dump = {
            "python": described,
            "refs": commits,
            "summary": summary,
            "rounds": {ref: [asdict(r) for r in runs] for ref, runs in results.items()},
        }
        args.json.write_text(json.dumps(dump, indent=2) + "\n")
    lost = any(r.events_stored != r.events_expected for runs in results.values() for r in runs)
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
