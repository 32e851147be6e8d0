"""The processes of the host benchmark: ten bots as separate processes or under one host,
their fake Bot API servers and /start bursts, and their memory read from ``/proc``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

FIRST_USER = 7_100_000_000


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
