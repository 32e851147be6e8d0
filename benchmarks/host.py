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
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import warnings
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

if __package__ in (None, ""):  # `python benchmarks/host.py`: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.rendered_bot import fetchval
from devkit.interpreters import IMMORTAL_VERSIONS, bots_venv, find_python, version_of

REPO_ROOT = Path(__file__).resolve().parent.parent
MIB = 1024.0
KINDS: tuple[dict[str, Any], ...] = (
    {"mode": "text"},
    {"mode": "media", "local_bot_api": True},
    {"mode": "text", "crm": True},
)
FIRST_USER = 7_100_000_000
TARGET_PSS_MIB = 400.0
TARGET_PSS_RATIO = 0.3
TARGET_THROUGHPUT = 0.9
TARGET_RESTART_S = 2.0


@dataclass
class ModeResult:
    mode: str
    start_s: float = 0.0
    per_bot_updates_s: dict[str, float] = field(default_factory=dict)
    pss_kib: dict[str, int] = field(default_factory=dict)  # process label -> PSS
    private_dirty_kib: dict[str, int] = field(default_factory=dict)
    idle_pss_kib: dict[str, int] = field(default_factory=dict)  # after start, before traffic
    restart_s: float = 0.0
    events_expected: int = 0
    events_stored: int = 0

    @property
    def total_pss_mib(self) -> float:
        return sum(self.pss_kib.values()) / MIB

    @property
    def median_updates_s(self) -> float:
        return statistics.median(self.per_bot_updates_s.values())


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def render(dst: Path, answers: dict[str, Any]) -> None:
    import copier
    import copier.errors

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", copier.errors.DirtyLocalWarning)
        warnings.simplefilter("ignore", copier.errors.MissingSettingsWarning)
        copier.run_copy(
            str(REPO_ROOT),
            dst,
            data=answers,
            defaults=True,
            unsafe=True,
            vcs_ref="HEAD",
            quiet=True,
        )


def smaps(pid: int) -> dict[str, int]:
    """``/proc/PID/smaps_rollup`` in KiB (Pss, Private_Dirty, Shared_Dirty, ...)."""
    found = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        found[name] = int(rest.split()[0])
    return found


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


@dataclass
class Bench:
    eco: Path
    slugs: list[str]
    names: dict[str, str]
    packages: dict[str, str]
    apis: dict[str, Any]
    users: int
    admin_url: str
    postgres_testing: Any  # the rendered bot's ecosystem_shared.testing.postgres
    python: str  # runs the bots and the host
    next_user: int = FIRST_USER
    metrics_port: int = 0  # --metrics-port: bot n serves /metrics on this + n (0: off)

    def scrape_all(self) -> int:
        """GET every bot's /metrics once (what Prometheus costs a bot); the bytes read."""
        total = 0
        for n, _ in enumerate(self.slugs):
            url = f"http://127.0.0.1:{self.metrics_port + n}/metrics"
            with urllib.request.urlopen(url, timeout=10) as response:
                total += len(response.read())
        return total

    def write_envs(self, database_url: str) -> None:
        for slug in self.slugs:
            api = self.apis[slug]
            values = {
                "BOT_TOKEN": api.token,
                "TELEGRAM_API_BASE_URL": api.base_url,
                "DATABASE_URL": database_url,
                "RATE_LIMIT_SECONDS": "0.001",
                "ANALYTICS_FLUSH_SECONDS": "0.5",
                "HEALTH_FILE": str(self.eco / f".alive-{slug}"),
                "LOG_LEVEL": "WARNING",
            }
            if self.metrics_port:  # the host overrides it with the same port (HOST_METRICS_PORT)
                values["METRICS_PORT"] = str(self.metrics_port + self.slugs.index(slug))
            lines = []
            example = (self.eco / slug / ".env.example").read_text(encoding="utf-8")
            for line in example.splitlines():
                name = line.partition("=")[0]
                lines.append(f"{name}={values.pop(name)}" if name in values else line)
            lines += [f"{k}={v}" for k, v in values.items()]
            (self.eco / slug / ".env").write_text("\n".join(lines) + "\n", encoding="utf-8")

    async def wait_polling(self, since: dict[str, int], timeout: float = 900.0) -> None:
        await asyncio.gather(
            *(self.apis[s].wait_for_polling(timeout, since=since[s]) for s in self.slugs)
        )

    async def starts(self, slug: str, count: int, timeout: float = 120.0) -> float:
        """Push /start from ``count`` new users at once; seconds until the last reply."""
        api = self.apis[slug]
        users = set(range(self.next_user, self.next_user + count))
        self.next_user += count
        for user in sorted(users):
            api.push_message("/start", user_id=user, first_name=f"U{user}")
        pushed = time.monotonic()
        deadline = pushed + timeout
        while True:
            replies = [c for c in api.calls("sendMessage") if c.params.get("chat_id") in users]
            if len({c.params["chat_id"] for c in replies}) >= count:
                return max(float(c.time) for c in replies) - pushed
            if time.monotonic() > deadline:
                raise RuntimeError(f"{slug}: {len(replies)}/{count} replies after {timeout} s")
            await asyncio.sleep(0.02)

    async def stored(self, database_url: str) -> int:
        conn = await asyncpg.connect(database_url)
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(DISTINCT (bot_name, telegram_id)) FROM shared.analytics_events"
                    " WHERE event_type = 'user_start'"
                )
            )
        finally:
            await conn.close()


class Separate:
    """Ten ``python -m <package>`` processes, each run from its bot directory."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.procs: dict[str, asyncio.subprocess.Process] = {}

    async def start_one(self, slug: str) -> None:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        self.procs[slug] = await asyncio.create_subprocess_exec(
            self.bench.python,
            "-m",
            self.bench.packages[slug],
            cwd=self.bench.eco / slug,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sys.stderr.fileno(),
        )

    async def start(self) -> None:
        for slug in self.bench.slugs:
            await self.start_one(slug)

    def pids(self) -> dict[str, int]:
        return {slug: p.pid for slug, p in self.procs.items()}

    async def kill_and_restart(self, slug: str) -> None:
        self.procs[slug].kill()
        await self.procs[slug].wait()
        await self.start_one(slug)  # at once, as `restart: unless-stopped` does the first time

    async def first_exit(self) -> str:
        """Waits until one bot process exits (before it should): which one and how."""
        waits = {asyncio.ensure_future(p.wait()): slug for slug, p in self.procs.items()}
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        task = done.pop()
        return f"{waits[task]} exited with status {task.result()}"

    async def stop(self) -> list[int]:
        for p in self.procs.values():
            p.send_signal(signal.SIGTERM)
        return [await asyncio.wait_for(p.wait(), 60) for p in self.procs.values()]


class Host:
    """``python -m ecosystem_host`` with the ten bot directories."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.proc: asyncio.subprocess.Process | None = None
        self.health = bench.eco / ".host-health"

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
        env["HOST_HEALTH_DIR"] = str(self.health)
        if self.bench.metrics_port:
            env["HOST_METRICS_PORT"] = str(self.bench.metrics_port)
        self.proc = await asyncio.create_subprocess_exec(
            self.bench.python,
            "-m",
            "ecosystem_host",
            *self.bench.slugs,
            cwd=self.bench.eco,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sys.stderr.fileno(),
        )

    def pids(self) -> dict[str, int]:
        assert self.proc is not None
        state = json.loads((self.health / "state.json").read_text(encoding="utf-8"))
        pids = {slug: int(bot["pid"]) for slug, bot in state["bots"].items()}
        extra = set(children_of(self.proc.pid)) - set(pids.values())
        return {"host parent": self.proc.pid, **pids, **{f"other {p}": p for p in extra}}

    async def kill_and_restart(self, slug: str) -> None:
        os.kill(self.pids()[slug], signal.SIGKILL)  # the host restarts it

    async def first_exit(self) -> str:
        assert self.proc is not None
        return f"the host exited with status {await self.proc.wait()}"

    async def stop(self) -> list[int]:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return [await asyncio.wait_for(self.proc.wait(), 60)]


async def start_polling(bench: Bench, runner: Separate | Host, since: dict[str, int]) -> None:
    """Start the runner and wait until every bot polls; fails at once if a process exits
    first (a refused bot, a missing dependency) instead of waiting out the timeout."""
    await runner.start()
    polling = asyncio.ensure_future(bench.wait_polling(since))
    exited = asyncio.ensure_future(runner.first_exit())
    done, _ = await asyncio.wait({polling, exited}, return_when=asyncio.FIRST_COMPLETED)
    if polling in done:
        exited.cancel()
        polling.result()
        return
    polling.cancel()
    raise RuntimeError(f"{exited.result()} before every bot polled (its output is above)")


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


@contextlib.asynccontextmanager
async def postgres(postgres_testing: Any) -> AsyncIterator[str]:
    url = os.environ.get("TEST_DATABASE_URL", "").strip()
    if url:
        yield url
        return
    server = postgres_testing.PostgresServer()
    server.start()
    try:
        yield str(server.url)
    finally:
        server.cleanup()


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
    progress(f"rendering a host-mode ecosystem and {bots} bots")
    render(eco, {"project_type": "ecosystem", "bots": ",".join(slugs), "deployment": "host"})
    names, packages = {}, {}
    for n, slug in enumerate(slugs):
        names[slug] = f"Bench {n + 1}"
        packages[slug] = slug.replace("-", "_")
        answers = {"bot_name": names[slug], "bot_slug": slug, "language": "en"}
        render(eco / slug, answers | KINDS[n % len(KINDS)])
    if python is None:
        python = sys.executable
    else:
        progress(f"a venv with the bots' dependencies from {python}")
        python = bots_venv(find_python(python), eco, slugs, work / "venv")
    described = interpreter(python)
    progress(f"bots and host run on {described}")
    sys.path.insert(0, str(eco / slugs[0]))
    fake_bot_api = importlib.import_module("ecosystem_shared.testing.fake_bot_api")
    postgres_testing = importlib.import_module("ecosystem_shared.testing.postgres")
    apis = {s: fake_bot_api.FakeBotAPI(f"{8000 + n}:bench-token-{s}") for n, s in enumerate(slugs)}
    for api in apis.values():
        await api.start()
    try:
        async with postgres(postgres_testing) as admin_url:
            bench = Bench(
                eco, slugs, names, packages, apis, users, admin_url, postgres_testing, python
            )
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
    finally:
        for api in apis.values():
            await api.stop()


def interpreter(python: str) -> str:
    """``Python 3.12.1 (/path)``, and a word when the host cannot make its objects immortal."""
    version = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    described = f"Python {version} ({python})"
    if version_of(python) not in IMMORTAL_VERSIONS:
        described += "; no immortal objects on it (the host image runs 3.12): try --python 3.12"
    return described


def merged(results: Sequence[ModeResult], mode: str) -> ModeResult:
    """Medians over the rounds of one mode (memory: the round with the median total PSS)."""
    runs = [r for r in results if r.mode == mode]
    if not runs:
        return ModeResult(mode)
    by_pss = sorted(runs, key=lambda r: r.total_pss_mib)[len(runs) // 2]
    slugs = runs[0].per_bot_updates_s
    return ModeResult(
        mode,
        start_s=statistics.median(r.start_s for r in runs),
        per_bot_updates_s={
            slug: statistics.median(r.per_bot_updates_s[slug] for r in runs) for slug in slugs
        },
        pss_kib=by_pss.pss_kib,
        private_dirty_kib=by_pss.private_dirty_kib,
        restart_s=statistics.median(r.restart_s for r in runs),
        events_expected=sum(r.events_expected for r in runs),
        events_stored=sum(r.events_stored for r in runs),
    )


def table(separate: ModeResult, host: ModeResult, bots: int, users: int, python: str) -> str:
    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "-"

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    speed_ratio = statistics.median(
        host.per_bot_updates_s[slug] / separate.per_bot_updates_s[slug]
        for slug in host.per_bot_updates_s
    )
    host_bots = [v for k, v in host.pss_kib.items() if not k.startswith(("host", "other"))]
    rows = [
        (
            "Total PSS after traffic",
            f"{separate.total_pss_mib:.0f} MiB",
            f"{host.total_pss_mib:.0f} MiB",
            ratio(host.total_pss_mib, separate.total_pss_mib),
            f"<= {TARGET_PSS_MIB:.0f} MiB and <= {TARGET_PSS_RATIO}x: "
            + verdict(
                host.total_pss_mib <= TARGET_PSS_MIB
                and host.total_pss_mib <= TARGET_PSS_RATIO * separate.total_pss_mib
            ),
        ),
        (
            "PSS per bot (host: child; parent apart)",
            f"{separate.total_pss_mib / bots:.1f} MiB",
            f"{statistics.median(host_bots) / MIB:.1f} MiB + parent "
            f"{host.pss_kib.get('host parent', 0) / MIB:.1f} MiB",
            "",
            "",
        ),
        (
            "Start until every bot polls",
            f"{separate.start_s:.1f} s",
            f"{host.start_s:.1f} s",
            ratio(host.start_s, separate.start_s),
            "",
        ),
        (
            f"/start throughput per bot (median of {bots}; ratio: median of per-bot ratios)",
            f"{separate.median_updates_s:.0f} upd/s",
            f"{host.median_updates_s:.0f} upd/s",
            f"{speed_ratio:.2f}x",
            f">= {TARGET_THROUGHPUT}x: " + verdict(speed_ratio >= TARGET_THROUGHPUT),
        ),
        (
            "Killed bot answers again",
            f"{separate.restart_s:.2f} s",
            f"{host.restart_s:.2f} s",
            "",
            f"host <= {TARGET_RESTART_S:.0f} s: " + verdict(host.restart_s <= TARGET_RESTART_S),
        ),
        (
            "user_start events stored",
            f"{separate.events_stored}/{separate.events_expected}",
            f"{host.events_stored}/{host.events_expected}",
            "",
            "all: "
            + verdict(
                host.events_stored == host.events_expected
                and separate.events_stored == separate.events_expected
            ),
        ),
    ]
    header = ("Figure", f"{bots} processes", "host", "host/separate", "Target")
    lines = [
        f"{bots} bots, /start from {users} distinct users each, {python}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


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
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    raise SystemExit(main())
