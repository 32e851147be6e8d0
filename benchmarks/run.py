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

import argparse
import asyncio
import compileall
import contextlib
import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent

BOT_NAME = "Benchmark Bot"  # the generated bot's bot_name: its events are counted by it
PACKAGE = "benchmark_bot"
# Every other answer is copier.yml's default (a text bot, no CRM, no external API).
ANSWERS: dict[str, Any] = {"bot_name": BOT_NAME, "package_name": PACKAGE, "language": "en"}
SEED_BOT_NAME = "Seed Bot"  # hard-coded in seed_bot.py
FIRST_USER_ID = 6_100_000_000  # load users: FIRST_USER_ID + 0 .. users - 1
WARMUP_USER_ID = FIRST_USER_ID - 1
RATE_LIMIT_SECONDS = "0.001"  # the limiter's full path, without dropping a user's repeat /start
POLL_SECONDS = 0.05  # how often the runner looks at the recorded calls (timing uses call times)
MIB = 1024.0

VARIANTS = ("bare", "seed", "generated")
LABELS = {"bare": "bare_bot.py", "seed": "seed_bot.py", "generated": "generated bot"}

TARGET_THROUGHPUT = 0.9  # generated >= 0.9 x bare updates/s, with every event stored
TARGET_RSS = 1.15  # idle generated <= 1.15 x idle bare
TARGET_INGEST = 10.0  # batched >= 10 x per-row rows/s

SEED_EVENT = """
INSERT INTO shared.analytics_events (telegram_id, bot_name, event_type, event_data)
VALUES ($1, $2, 'user_start', NULL)
"""
COUNT_STARTS = """
SELECT count(*) FROM shared.analytics_events WHERE bot_name = $1 AND event_type = 'user_start'
"""


# ---------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class Config:
    updates: int
    users: int
    rounds: int
    renders: int
    ingest_rows: int
    ingest_rounds: int
    idle_seconds: float
    limiter_users: int
    quick: bool
    json_path: Path | None


FULL: dict[str, float] = {"updates": 2000, "rounds": 5, "renders": 3, "ingest_rows": 10_000}
FULL |= {"ingest_rounds": 3, "idle_seconds": 2.0}
QUICK: dict[str, float] = {"updates": 1000, "rounds": 1, "renders": 2, "ingest_rows": 5_000}
QUICK |= {"ingest_rounds": 2, "idle_seconds": 1.0}


def parse_args(argv: Sequence[str]) -> Config:
    parser = argparse.ArgumentParser(
        description="Throughput, memory and ingest of the generated bot against baselines.",
    )
    parser.add_argument("--quick", action="store_true", help="~1 minute run (fewer rounds/rows)")
    parser.add_argument("--updates", type=int, help="/start updates per bot round (2000)")
    parser.add_argument("--users", type=int, default=200, help="distinct users sending them")
    parser.add_argument("--rounds", type=int, help="interleaved rounds of each bot (5)")
    parser.add_argument("--renders", type=int, help="copier copy runs timed (3)")
    parser.add_argument("--ingest-rows", type=int, help="rows per ingest round (10000)")
    parser.add_argument("--ingest-rounds", type=int, help="interleaved ingest rounds (3)")
    parser.add_argument("--idle-seconds", type=float, help="idle time before reading RSS (2)")
    parser.add_argument(
        "--limiter-users", type=int, default=1_000_000, help="distinct users for limiter memory"
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    preset = QUICK if args.quick else FULL

    def pick(name: str) -> Any:
        value = getattr(args, name)
        return preset[name] if value is None else value

    config = Config(
        updates=int(pick("updates")),
        users=args.users,
        rounds=int(pick("rounds")),
        renders=int(pick("renders")),
        ingest_rows=int(pick("ingest_rows")),
        ingest_rounds=int(pick("ingest_rounds")),
        idle_seconds=float(pick("idle_seconds")),
        limiter_users=args.limiter_users,
        quick=args.quick,
        json_path=args.json,
    )
    positive = ("updates", "users", "rounds", "renders", "ingest_rows", "ingest_rounds")
    for name in positive:
        if getattr(config, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if config.users > config.updates:
        parser.error("--users must not exceed --updates")
    return config


# ---------------------------------------------------------------------------- results


@dataclass
class BotRun:
    variant: str
    round: int
    startup_s: float  # process start until its first getUpdates
    idle_rss_kb: int  # after warm-up and idle_seconds
    updates: int
    seconds: float  # last updates pushed -> N-th reply received
    updates_per_s: float
    cpu_s: float  # the bot process's CPU time (user + system) during the load
    rate_limited: int  # replies that were the rate-limit warning instead of a greeting
    exit_code: int
    events_expected: int | None = None  # generated: warm-up + greetings
    events_stored: int | None = None  # generated: user_start rows written by this process
    log_warnings: int = 0  # WARNING lines the process logged (SIGTERM notice excluded)
    db_lost: int = 0  # generated: "Lost the database" while PostgreSQL was up all along
    upserts_deferred: int = 0  # generated: /start user upserts that fell back to the buffer
    error_lines: list[str] = field(default_factory=list)  # ERROR/CRITICAL records, tracebacks


@dataclass
class IngestRun:
    way: str  # "per-row" or "batched"
    round: int
    rows: int
    seconds: float
    rows_per_s: float


@dataclass
class Results:
    machine: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    render_seconds: list[float] = field(default_factory=list)
    bot_runs: list[BotRun] = field(default_factory=list)
    seed_events_stored: int | None = None
    ingest_runs: list[IngestRun] = field(default_factory=list)
    limiter: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # missing events, crashes: exit 1
    notes: list[str] = field(default_factory=list)

    def runs(self, variant: str) -> list[BotRun]:
        return [run for run in self.bot_runs if run.variant == variant]

    def ingest(self, way: str) -> list[IngestRun]:
        return [run for run in self.ingest_runs if run.way == way]


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# ---------------------------------------------------------------------------- machine


def run_text(*command: str) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return result.stdout.strip()


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def memory_total() -> str:
    with contextlib.suppress(OSError, IndexError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / MIB / MIB:.1f} GiB"
    return "unknown"


def version_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, Any]:
    commit = run_text("git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD")
    dirty = bool(run_text("git", "-C", str(REPO_ROOT), "status", "--porcelain"))
    return {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "memory": memory_total(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "aiogram": version_of("aiogram"),
        "asyncpg": version_of("asyncpg"),
        "copier": version_of("copier"),
        "template_commit": commit + (" + uncommitted changes" if dirty else ""),
        "load_average_start": list(os.getloadavg()),
    }


# ---------------------------------------------------------------------------- /proc readings


def proc_status_kb(pid: int, name: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{name}:"):
                return int(line.split()[1])
    raise RuntimeError(f"{name} not in /proc/{pid}/status")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def settled_rss_kb(pid: int, timeout: float = 5.0) -> int:
    """VmRSS once three readings 0.25 s apart agree (or the last one after ``timeout``)."""
    deadline = time.monotonic() + timeout
    samples = [proc_status_kb(pid, "VmRSS")]
    while not (len(samples) >= 3 and len(set(samples[-3:])) == 1):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
        samples.append(proc_status_kb(pid, "VmRSS"))
    return samples[-1]


# ---------------------------------------------------------------------------- rendering


def render(dst: Path) -> float:
    """``copier copy`` of this repository into ``dst``; returns the seconds it took."""
    import copier
    import copier.errors

    with warnings.catch_warnings():
        # Rendering the working tree (HEAD + uncommitted changes) is intended here.
        warnings.simplefilter("ignore", copier.errors.DirtyLocalWarning)
        warnings.simplefilter("ignore", copier.errors.MissingSettingsWarning)
        started = time.perf_counter()
        copier.run_copy(
            str(REPO_ROOT),
            dst,
            data=dict(ANSWERS),
            defaults=True,
            unsafe=True,
            vcs_ref="HEAD",
            quiet=True,
        )
        return time.perf_counter() - started


@dataclass(frozen=True)
class Kit:
    """The rendered bot's own modules, imported from its directory."""

    bot_dir: Path
    fake_bot_api: ModuleType
    bot_process: ModuleType
    postgres: ModuleType
    db: ModuleType
    analytics: ModuleType
    migrations: ModuleType
    texts: ModuleType
    settings: ModuleType


def load_kit(bot_dir: Path) -> Kit:
    sys.path.insert(0, str(bot_dir))
    load = importlib.import_module
    return Kit(
        bot_dir=bot_dir,
        fake_bot_api=load("ecosystem_shared.testing.fake_bot_api"),
        bot_process=load("ecosystem_shared.testing.bot_process"),
        postgres=load("ecosystem_shared.testing.postgres"),
        db=load("ecosystem_shared.db"),
        analytics=load("ecosystem_shared.analytics"),
        migrations=load("ecosystem_shared.migrations"),
        texts=load("ecosystem_shared.texts"),
        settings=load(f"{PACKAGE}.settings"),
    )


# ---------------------------------------------------------------------------- PostgreSQL


@contextlib.asynccontextmanager
async def postgres_server(kit: Kit, results: Results) -> AsyncIterator[str]:
    """An admin URL: TEST_DATABASE_URL, or a throwaway cluster removed afterwards."""
    url = os.environ.get("TEST_DATABASE_URL", "").strip()
    if url:
        results.machine["postgres_source"] = (
            f"TEST_DATABASE_URL ({kit.db.describe_dsn(url)}), fresh databases"
        )
        yield url
        return
    server = kit.postgres.PostgresServer()
    try:
        # Blocking on purpose: a SIGTERM/Ctrl-C must not interrupt initdb/pg_ctl half-way
        # (a cancelled thread would go on starting a server that nothing stops).
        server.start()
        results.machine["postgres_source"] = (
            f"throwaway cluster from {server.bin_dir} (fsync=off, synchronous_commit=off)"
        )
        yield str(server.url)
    finally:
        progress("stopping the throwaway PostgreSQL")
        server.cleanup()


async def admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def fresh_database(kit: Kit, admin_url: str, prefix: str) -> AsyncIterator[str]:
    """A new database with the shared schema; dropped afterwards (open connections too)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await admin(admin_url, f'CREATE DATABASE "{name}"')
    try:
        url: str = kit.postgres.with_database(admin_url, name)
        conn = await asyncpg.connect(url, timeout=10)
        try:
            await kit.db.configure_connection(conn)
            await kit.migrations.apply_migrations(conn, kit.migrations.shared_migrations())
        finally:
            await conn.close()
        yield url
    finally:
        await admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def fetchval(url: str, query: str, *args: Any) -> Any:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


# ---------------------------------------------------------------------------- bot rounds


@dataclass(frozen=True)
class Variant:
    name: str
    module: str
    rootdir: Path
    env: dict[str, str]


def count_lines(output: str, *needles: str) -> int:
    return sum(1 for line in output.splitlines() if all(needle in line for needle in needles))


def output_errors(output: str, context: int = 12) -> list[str]:
    """ERROR/CRITICAL records and tracebacks, each with the lines that follow it."""
    lines = output.splitlines()
    found: list[str] = []
    covered = 0  # lines before this index are already part of a reported block
    for i, line in enumerate(lines):
        marked = "Traceback" in line or " ERROR " in line or " CRITICAL " in line
        if marked and i >= covered:
            found.append("\n".join(lines[i : i + context]))
            covered = i + context
    return found


async def force_stop(process: Any) -> None:
    """Stop (SIGTERM, then SIGKILL) and clean up after a failure; never raises."""
    try:
        if process.pid is not None:
            await process.stop(timeout=5.0)
    except Exception:  # noqa: BLE001 - already failing; the original error is reported
        pass
    finally:
        shutil.rmtree(process.workdir, ignore_errors=True)  # stop() may not have got that far


async def start_process(process: Any) -> None:
    """``process.start()``, but a cancellation (Ctrl-C, SIGTERM) never leaves a forked child
    unknown to ``process``: the spawn is allowed to finish so that the caller can stop it."""
    task = asyncio.ensure_future(process.start())
    try:
        await asyncio.shield(task)
    except BaseException:
        while not task.done() and process.pid is None:
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise


async def wait_replies(
    api: Any, process: Any, chats: set[int], count: int, timeout: float
) -> list[Any]:
    """The first ``count`` sendMessage calls to ``chats`` (the fake records every call)."""
    deadline = time.monotonic() + timeout
    while True:
        replies = [c for c in api.calls("sendMessage") if c.params.get("chat_id") in chats]
        if len(replies) >= count:
            return sorted(replies, key=lambda call: float(call.time))[:count]
        if process.returncode is not None:
            raise RuntimeError(
                f"python -m {process.module} exited ({process.returncode}) after"
                f" {len(replies)}/{count} replies; output:\n{process.output[-3000:]}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"python -m {process.module}: {len(replies)}/{count} replies after {timeout:.0f} s;"
                f" output:\n{process.output[-3000:]}"
            )
        await asyncio.sleep(POLL_SECONDS)


async def bot_round(
    kit: Kit,
    api: Any,
    variant: Variant,
    config: Config,
    round_no: int,
    database_url: str,
    warning_prefix: str,
) -> BotRun:
    chats = {FIRST_USER_ID + k for k in range(config.users)}
    stored_before = 0
    if variant.name == "generated":
        stored_before = int(await fetchval(database_url, COUNT_STARTS, BOT_NAME))
    process = kit.bot_process.BotProcess(
        variant.module, variant.rootdir, api, env=variant.env, start_timeout=90.0
    )
    try:
        api.clear_calls()
        started = time.monotonic()
        await start_process(process)  # returns once it polls; stops and raises if it does not
        startup = time.monotonic() - started
        # Warm-up: one /start answered end to end (imports, connections, first user).
        api.push_message("/start", user_id=WARMUP_USER_ID, first_name="Warmup")
        await api.wait_for_call("sendMessage", timeout=60.0, chat_id=WARMUP_USER_ID)
        await asyncio.sleep(config.idle_seconds)
        rss = await settled_rss_kb(process.pid)
        api.clear_calls()
        for k in range(config.updates):
            user_id = FIRST_USER_ID + k % config.users
            api.push_message("/start", user_id=user_id, first_name=f"User{k % config.users}")
        # The bot cannot see an update before this loop yields: time from here.
        cpu_before = cpu_seconds(process.pid)
        pushed = time.monotonic()
        replies = await wait_replies(
            api, process, chats, config.updates, timeout=max(120.0, config.updates / 10)
        )
        cpu = cpu_seconds(process.pid) - cpu_before
        elapsed = max(float(call.time) for call in replies) - pushed
    except BaseException:
        await force_stop(process)
        raise
    try:
        exit_code = int(await process.stop(signal.SIGTERM, 30.0))  # SIGTERM flushes analytics
    except BaseException:
        await force_stop(process)
        raise
    if exit_code != 0:
        raise RuntimeError(
            f"{LABELS[variant.name]} (round {round_no + 1}) exited with {exit_code};"
            f" output:\n{process.output[-3000:]}"
        )
    warned = sum(1 for c in replies if str(c.params.get("text", "")).startswith(warning_prefix))
    run = BotRun(
        variant=variant.name,
        round=round_no + 1,
        startup_s=startup,
        idle_rss_kb=rss,
        updates=config.updates,
        seconds=elapsed,
        updates_per_s=config.updates / elapsed,
        cpu_s=cpu,
        rate_limited=warned,
        exit_code=exit_code,
        log_warnings=count_lines(process.output, "WARNING")
        - count_lines(process.output, "WARNING", "Received SIGTERM"),
        db_lost=count_lines(process.output, "Lost the database"),
        upserts_deferred=count_lines(process.output, "user upsert deferred"),
        error_lines=output_errors(process.output),
    )
    if variant.name == "generated":
        run.events_expected = 1 + config.updates - warned  # warm-up + every greeting
        stored = int(await fetchval(database_url, COUNT_STARTS, BOT_NAME))
        run.events_stored = stored - stored_before
    return run


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def throughput(
    kit: Kit, api: Any, variants: dict[str, Variant], config: Config, db_url: str, res: Results
) -> None:
    language = str(kit.settings.Settings.model_fields["LANGUAGE"].default)
    warning_prefix = str(kit.texts.shared_texts(language).rate_limited).split("{", 1)[0]
    for round_no in range(config.rounds):
        for name in VARIANTS:
            run = await bot_round(
                kit, api, variants[name], config, round_no, db_url, warning_prefix
            )
            res.bot_runs.append(run)
            stored = "" if run.events_stored is None else f", {run.events_stored} events stored"
            if run.db_lost or run.upserts_deferred:
                stored += f", DB 'lost' {run.db_lost}x, {run.upserts_deferred} upserts deferred"
            progress(
                f"round {round_no + 1}/{config.rounds} {LABELS[name]:>13}:"
                f" {run.updates_per_s:7.0f} updates/s, idle RSS {run.idle_rss_kb / MIB:.1f} MiB"
                f"{stored}"
            )
            if run.error_lines:
                first = run.error_lines[0].splitlines()[0]
                res.notes.append(
                    f"{LABELS[name]} round {run.round} logged {len(run.error_lines)} error"
                    f" record(s) (the process kept serving; details in the JSON): {first[:160]}"
                )
            if run.rate_limited:
                res.notes.append(
                    f"{LABELS[name]} round {run.round}: {run.rate_limited} replies were the"
                    " rate-limit warning (counted as replies, not as handled /start)"
                )
            if run.events_stored is not None and run.events_stored != run.events_expected:
                res.problems.append(
                    f"generated bot round {run.round}: {run.events_stored} user_start events"
                    f" stored, {run.events_expected} expected"
                )
    res.seed_events_stored = int(await fetchval(db_url, COUNT_STARTS, SEED_BOT_NAME))


# ---------------------------------------------------------------------------- ingest


async def ingest_per_row(url: str, rows: int, user_ids: list[int]) -> float:
    """The seed's way: a pool acquire and one INSERT per event."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=5)
    try:
        started = time.perf_counter()
        for i in range(rows):
            async with pool.acquire() as conn:
                await conn.execute(SEED_EVENT, user_ids[i % len(user_ids)], "ingest per-row")
        return time.perf_counter() - started
    finally:
        await pool.close()


async def ingest_batched(kit: Kit, url: str, rows: int, user_ids: list[int]) -> float:
    """The template's way: Analytics.track_event into the buffer, then flush() (batches, COPY)."""
    db = kit.db.Database(url, migrations=kit.migrations.shared_migrations())
    await db.start()
    try:
        if not db.available:
            raise RuntimeError(f"Database not available for the ingest benchmark ({url})")
        analytics = kit.analytics.Analytics(db, "ingest batched", buffer_size=rows)
        started = time.perf_counter()
        for i in range(rows):
            await analytics.track_event(user_ids[i % len(user_ids)], "user_start")
        written = int(await analytics.flush())
        elapsed = time.perf_counter() - started
        if written != rows or analytics.dropped:
            raise RuntimeError(f"batched ingest wrote {written}/{rows} ({analytics.dropped} lost)")
        await analytics.close()
        return elapsed
    finally:
        await db.close()


async def ingest(kit: Kit, admin_url: str, config: Config, res: Results) -> None:
    async with fresh_database(kit, admin_url, "bench_ingest") as url:
        user_ids = [FIRST_USER_ID + k for k in range(config.users)]
        conn = await asyncpg.connect(url, timeout=10)
        try:
            await conn.executemany(
                "INSERT INTO shared.users (telegram_id, first_name) VALUES ($1, $2)",
                [(user_id, "User") for user_id in user_ids],
            )
        finally:
            await conn.close()
        ways: dict[str, Callable[[], Any]] = {
            "per-row": lambda: ingest_per_row(url, config.ingest_rows, user_ids),
            "batched": lambda: ingest_batched(kit, url, config.ingest_rows, user_ids),
        }
        for round_no in range(config.ingest_rounds):
            for way, run in ways.items():
                await admin(url, "TRUNCATE shared.analytics_events")
                seconds = float(await run())
                stored = int(await fetchval(url, "SELECT count(*) FROM shared.analytics_events"))
                if stored != config.ingest_rows:
                    res.problems.append(
                        f"ingest {way} round {round_no + 1}: {stored}/{config.ingest_rows} rows"
                    )
                res.ingest_runs.append(
                    IngestRun(
                        way, round_no + 1, config.ingest_rows, seconds, config.ingest_rows / seconds
                    )
                )
                progress(
                    f"ingest round {round_no + 1}/{config.ingest_rounds} {way:>8}:"
                    f" {config.ingest_rows / seconds:9.0f} rows/s"
                )


# ---------------------------------------------------------------------------- limiter memory


async def limiter_memory(kit: Kit, config: Config) -> dict[str, Any]:
    interval = float(kit.settings.Settings.model_fields["RATE_LIMIT_SECONDS"].default)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(kit.bot_dir), env.get("PYTHONPATH")]))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(BENCH_DIR / "limiter_memory.py"),
        str(config.limiter_users),
        str(interval),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), 600)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise RuntimeError(f"limiter_memory.py failed ({process.returncode}):\n{stderr.decode()}")
    result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------------------- the run


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

    kit = load_kit(bot_dir)
    async with contextlib.AsyncExitStack() as stack:
        admin_url = await stack.enter_async_context(postgres_server(kit, res))
        db_url = await stack.enter_async_context(fresh_database(kit, admin_url, "bench"))
        res.machine["postgresql"] = str(await fetchval(db_url, "SHOW server_version"))
        api = kit.fake_bot_api.FakeBotAPI()
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
        progress(
            f"throughput: {config.rounds} round(s) x (bare, seed, generated),"
            f" {config.updates} /start from {config.users} users each"
        )
        await throughput(kit, api, variants, config, db_url, res)

        progress(f"ingest: {config.ingest_rounds} round(s) x {config.ingest_rows} rows")
        await ingest(kit, admin_url, config, res)

    progress(f"rate limiter memory at {config.limiter_users:,} distinct users")
    res.limiter = await limiter_memory(kit, config)


# ---------------------------------------------------------------------------- report


def fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def spread(values: Sequence[float], spec: str) -> str:
    return f"{min(values):{spec}}-{max(values):{spec}}" if values else ""


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def summarize(res: Results) -> dict[str, Any]:
    """Medians, ratios and target verdicts (also the JSON's "summary")."""
    tput = {v: median([r.updates_per_s for r in res.runs(v)]) for v in VARIANTS}
    rss = {v: median([float(r.idle_rss_kb) for r in res.runs(v)]) for v in VARIANTS}
    cpu = {v: median([r.cpu_s / r.updates * 1e6 for r in res.runs(v)]) for v in VARIANTS}
    startup = {v: median([r.startup_s for r in res.runs(v)]) for v in VARIANTS}
    gen = res.runs("generated")
    expected = sum(r.events_expected or 0 for r in gen)
    stored = sum(r.events_stored or 0 for r in gen)
    all_stored = bool(gen) and stored == expected
    per_row = median([r.rows_per_s for r in res.ingest("per-row")])
    batched = median([r.rows_per_s for r in res.ingest("batched")])
    t_ratio = ratio(tput["generated"], tput["bare"])
    r_ratio = ratio(rss["generated"], rss["bare"])
    i_ratio = ratio(batched, per_row)
    return {
        "updates_per_s": tput,
        "ratio_generated_bare": t_ratio,
        "ratio_seed_bare": ratio(tput["seed"], tput["bare"]),
        "cpu_us_per_update": cpu,
        "cpu_ratio_generated_bare": ratio(cpu["generated"], cpu["bare"]),
        "startup_s": startup,
        "idle_rss_kb": rss,
        "rss_ratio_generated_bare": r_ratio,
        "db_lost": sum(r.db_lost for r in gen),
        "upserts_deferred": sum(r.upserts_deferred for r in gen),
        "log_warnings": {v: sum(r.log_warnings for r in res.runs(v)) for v in VARIANTS},
        "events_expected": expected,
        "events_stored": stored,
        "seed_events_stored": res.seed_events_stored,
        "ingest_rows_per_s": {"per-row": per_row, "batched": batched},
        "ingest_ratio": i_ratio,
        "render_median_s": median(res.render_seconds),
        "targets": {
            "throughput": verdict(
                None if t_ratio is None else t_ratio >= TARGET_THROUGHPUT and all_stored
            ),
            "idle_rss": verdict(None if r_ratio is None else r_ratio <= TARGET_RSS),
            "ingest": verdict(None if i_ratio is None else i_ratio >= TARGET_INGEST),
            "events_stored": verdict(all_stored if gen else None),
        },
    }


def table(res: Results, summary: dict[str, Any], config: Config) -> str:
    m = res.machine
    rows: list[tuple[str, str, str, str, str]] = []

    def add(name: str, value: str, rng: str = "", target: str = "", result: str = "") -> None:
        rows.append((name, value, rng, target, result))

    add(
        "Render one bot (copier copy)",
        fmt(summary["render_median_s"], ".2f", " s"),
        spread(res.render_seconds, ".2f"),
    )
    for v in VARIANTS:
        values = [r.updates_per_s for r in res.runs(v)]
        add(
            f"Throughput {LABELS[v]}",
            fmt(summary["updates_per_s"][v], ".0f", " upd/s"),
            spread(values, ".0f"),
        )
    targets = summary["targets"]
    add(
        "  generated / bare",
        fmt(summary["ratio_generated_bare"], ".2f", "x"),
        "",
        f">= {TARGET_THROUGHPUT}x, all stored",
        targets["throughput"],
    )
    add("  seed / bare", fmt(summary["ratio_seed_bare"], ".2f", "x"))
    add(
        "Events stored (generated, +warm-ups)",
        f"{summary['events_stored']} / {summary['events_expected']}",
        "",
        "all",
        targets["events_stored"],
    )
    gen = res.runs("generated")
    add(
        "  'Lost the database' during load",
        f"{summary['db_lost']} in {len(gen)} run(s)",
        spread([r.db_lost for r in gen], "d"),
    )
    add(
        "  user upserts deferred to buffer",
        str(summary["upserts_deferred"]),
        spread([r.upserts_deferred for r in gen], "d"),
    )
    seed = res.runs("seed")
    if res.seed_events_stored is not None:
        add(
            "Events stored (seed, info)",
            f"{res.seed_events_stored} / {sum(r.updates + 1 for r in seed)}",
        )
    for v in VARIANTS:
        add(
            f"Bot CPU per update, {LABELS[v]}",
            fmt(summary["cpu_us_per_update"][v], ".0f", " us"),
            spread([r.cpu_s / r.updates * 1e6 for r in res.runs(v)], ".0f"),
        )
    add("  generated / bare", fmt(summary["cpu_ratio_generated_bare"], ".2f", "x"))
    for v in VARIANTS:
        add(
            f"Startup to polling, {LABELS[v]}",
            fmt(summary["startup_s"][v], ".2f", " s"),
            spread([r.startup_s for r in res.runs(v)], ".2f"),
        )
    for v in VARIANTS:
        rss = summary["idle_rss_kb"][v]
        add(
            f"Idle RSS {LABELS[v]}",
            fmt(rss / MIB if rss else None, ".1f", " MiB"),
            spread([r.idle_rss_kb / MIB for r in res.runs(v)], ".1f"),
        )
    add(
        "  generated / bare",
        fmt(summary["rss_ratio_generated_bare"], ".2f", "x"),
        "",
        f"<= {TARGET_RSS}x",
        targets["idle_rss"],
    )
    ingest = summary["ingest_rows_per_s"]
    add(
        "Ingest per-row INSERT (seed way)",
        fmt(ingest["per-row"], ".0f", " rows/s"),
        spread([r.rows_per_s for r in res.ingest("per-row")], ".0f"),
    )
    add(
        "Ingest batched (Analytics.flush)",
        fmt(ingest["batched"], ".0f", " rows/s"),
        spread([r.rows_per_s for r in res.ingest("batched")], ".0f"),
    )
    add(
        "  batched / per-row",
        fmt(summary["ingest_ratio"], ".1f", "x"),
        "",
        f">= {TARGET_INGEST:.0f}x",
        targets["ingest"],
    )
    lim = res.limiter
    if lim:
        users = f"{lim['users']:,}"
        add(f"Rate limiter RSS before {users} users", f"{lim['rss_before_kb'] / MIB:.1f} MiB")
        add(
            f"Rate limiter RSS after {users} users",
            f"{lim['rss_after_kb'] / MIB:.1f} MiB",
            f"peak {lim['peak_rss_kb'] / MIB:.1f}",
        )
        add("  delta", f"{lim['rss_delta_kb'] / MIB:+.1f} MiB", f"{lim['entries_kept']:,} kept")
        add("  time per check", f"{lim['ns_per_check']:.0f} ns")

    headers = ("Figure", "Median", "Range", "Target", "Result")
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(5)]

    def line(cells: Sequence[str]) -> str:
        return " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))

    load = m.get("load_average_start", [0.0])[0], m.get("load_average_end", [0.0])[0]
    out = [
        "",
        "=" * 100,
        "Bot template benchmark" + (" (--quick)" if config.quick else ""),
        f"Machine: nproc {m.get('nproc')} ({m.get('usable_cpus')} usable), {m.get('cpu_model')},"
        f" {m.get('memory')} RAM; Python {m.get('python')}; {m.get('platform')}",
        f"Load average (1 min) at start/end: {load[0]:.2f} / {load[1]:.2f}",
        f"aiogram {m.get('aiogram')}, asyncpg {m.get('asyncpg')}, copier {m.get('copier')};"
        f" PostgreSQL {m.get('postgresql', '?')}: {m.get('postgres_source', '?')}",
        f"Template: {m.get('template_commit')}",
        f"Throughput: {config.rounds} interleaved round(s) of bare, seed, generated; each a fresh"
        f" process, warm-up /start, {config.idle_seconds:g} s idle (RSS read), then"
        f" {config.updates} /start from {config.users} users, timed from push to the"
        f" {config.updates}-th reply.",
        f"Generated bot: python -m {PACKAGE}, all middlewares, DATABASE_URL set,"
        f" ENABLE_ANALYTICS=true, RATE_LIMIT_SECONDS={RATE_LIMIT_SECONDS};"
        " ANALYTICS_CHANNEL_ID unset, so every variant makes the same API calls"
        " (one sendMessage per /start, no channel notifications).",
        f"Ingest: {config.ingest_rounds} interleaved round(s) of {config.ingest_rows} rows each"
        " way. Medians; Range is min-max over rounds.",
        "",
        line(headers),
        "-+-".join("-" * width for width in widths),
        *(line(row) for row in rows),
        "",
    ]
    out += [f"Note: {note}" for note in res.notes]
    if res.problems:
        out += [f"FAILED: {problem}" for problem in res.problems]
    else:
        out.append("OK: every user_start event of the generated bot is in the database.")
    out.append("=" * 100)
    return "\n".join(out)


def report(res: Results, config: Config) -> None:
    res.machine["load_average_end"] = list(os.getloadavg())
    summary = summarize(res)
    print(table(res, summary, config), flush=True)
    if config.json_path is not None:
        payload = {
            "ok": not res.problems,
            "machine": res.machine,
            "config": res.config,
            "summary": summary,
            "targets": {
                "throughput_ratio_min": TARGET_THROUGHPUT,
                "idle_rss_ratio_max": TARGET_RSS,
                "ingest_ratio_min": TARGET_INGEST,
            },
            "render_seconds": res.render_seconds,
            "bot_runs": [asdict(run) for run in res.bot_runs],
            "ingest_runs": [asdict(run) for run in res.ingest_runs],
            "rate_limiter": res.limiter,
            "notes": res.notes,
            "problems": res.problems,
        }
        config.json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"JSON written to {config.json_path}")


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
