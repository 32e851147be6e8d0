"""/start throughput, CPU and idle memory of the bots, in interleaved rounds.

The generated bot runs twice per round: metrics off, and metrics on (``METRICS_PORT``) with
``/metrics`` scraped every :data:`SCRAPE_SECONDS` while it works, as Prometheus would (more
often than its 15 s), and its ``sendMessage`` counter checked against the replies."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.config import (
    BOT_NAME,
    COUNT_STARTS,
    FIRST_USER_ID,
    GENERATED,
    MIB,
    POLL_SECONDS,
    SCRAPE_SECONDS,
    SEED_BOT_NAME,
    VARIANTS,
    WARMUP_USER_ID,
    Config,
    is_generated,
    label,
)
from benchmarks.machine import cpu_seconds, settled_rss_kb
from benchmarks.rendered_bot import RenderedBot, fetchval
from benchmarks.results import BotRun, Results, progress


@dataclass(frozen=True)
class Variant:
    name: str
    module: str
    rootdir: Path
    env: dict[str, str]
    metrics_port: int | None = None  # metrics on: scraped during the round


SENT_OK = re.compile(
    r'^tgbot_api_requests_total\{(?=[^}]*method="sendMessage")(?=[^}]*outcome="ok")[^}]*\}'
    r" ([0-9.e+]+)$",
    re.M,
)


class Scraper:
    """GET /metrics every SCRAPE_SECONDS until stopped; the last body kept."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.count = 0
        self.last = ""
        self._task: asyncio.Task[None] | None = None

    async def scrape(self, http: aiohttp.ClientSession) -> None:
        async with http.get(self.url) as response:
            response.raise_for_status()
            self.last = await response.text()
            self.count += 1

    async def _loop(self) -> None:
        async with aiohttp.ClientSession() as http:
            while True:
                await self.scrape(http)
                await asyncio.sleep(SCRAPE_SECONDS)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop the loop, then one last scrape (the counters after the load)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        async with aiohttp.ClientSession() as http:
            await self.scrape(http)

    def sent_ok(self) -> float:
        return sum(float(value) for value in SENT_OK.findall(self.last))


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
    rendered: RenderedBot, api: Any, process: Any, chats: set[int], count: int, timeout: float
) -> list[Any]:
    """The first ``count`` sendMessage calls to ``chats`` (the fake records every call)."""

    def replies() -> list[Any]:
        return [c for c in api.calls("sendMessage") if c.params.get("chat_id") in chats]

    async def answered() -> int:
        if process.returncode is not None:
            raise RuntimeError(
                f"python -m {process.module} exited ({process.returncode}) after"
                f" {len(replies())}/{count} replies; output:\n{process.output[-3000:]}"
            )
        return len(replies())

    try:
        await rendered.waiting.wait_until(
            answered,
            lambda n: n >= count,
            timeout=timeout,
            interval=POLL_SECONDS,
            what=f"{count} replies of python -m {process.module}",
        )
    except AssertionError as error:
        raise RuntimeError(f"{error}; output:\n{process.output[-3000:]}") from None
    return sorted(replies(), key=lambda call: float(call.time))[:count]


async def bot_round(
    rendered: RenderedBot,
    api: Any,
    variant: Variant,
    config: Config,
    round_no: int,
    database_url: str,
    warning_prefix: str,
) -> BotRun:
    chats = {FIRST_USER_ID + k for k in range(config.users)}
    stored_before = 0
    if is_generated(variant.name):
        stored_before = int(await fetchval(database_url, COUNT_STARTS, BOT_NAME))
    scraper = Scraper(variant.metrics_port) if variant.metrics_port else None
    process = rendered.bot_process.BotProcess(
        variant.module, variant.rootdir, api, env=variant.env, start_timeout=90.0
    )
    try:
        api.clear_calls()
        started = time.monotonic()
        await start_process(process)  # returns once it polls; stops and raises if it does not
        startup = time.monotonic() - started
        if scraper is not None:
            scraper.start()
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
            rendered, api, process, chats, config.updates, timeout=max(120.0, config.updates / 10)
        )
        cpu = cpu_seconds(process.pid) - cpu_before
        elapsed = max(float(call.time) for call in replies) - pushed
        if scraper is not None:
            await scraper.stop()
            counted = scraper.sent_ok()
            if counted != config.updates + 1:  # + the warm-up's reply
                raise RuntimeError(
                    f"{label(variant.name)}: /metrics counted {counted:g} sendMessage ok,"
                    f" {config.updates + 1} replies were received"
                )
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
            f"{label(variant.name)} (round {round_no + 1}) exited with {exit_code};"
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
        error_lines=output_errors(process.output),
        scrapes=scraper.count if scraper is not None else 0,
    )
    if is_generated(variant.name):
        # The counters the process logs when it stops (Analytics.counters), not log wording.
        counters = rendered.analytics.parse_counters(process.output)
        if counters is None:
            raise RuntimeError(
                f"the generated bot logged no {rendered.analytics.COUNTERS_PREFIX!r} line at exit;"
                f" output:\n{process.output[-3000:]}"
            )
        run.db_lost = counters["connections_lost"]
        run.upserts_deferred = counters["upserts_deferred"]
        run.events_expected = 1 + config.updates - warned  # warm-up + every greeting
        stored = int(await fetchval(database_url, COUNT_STARTS, BOT_NAME))
        run.events_stored = stored - stored_before
    return run


def metrics_order(round_no: int) -> list[str]:
    """bare, seed, generated, metrics; metrics off and on take turns going first, so that no
    order favours one."""
    order = list(VARIANTS)
    if round_no % 2:
        off, on = (order.index(name) for name in GENERATED)
        order[off], order[on] = order[on], order[off]
    return order


async def throughput(
    rendered: RenderedBot,
    api: Any,
    variants: dict[str, Variant],
    config: Config,
    db_url: str,
    res: Results,
    order: Callable[[int], Sequence[str]] = metrics_order,
) -> None:
    """``config.rounds`` rounds of the variants, in the order ``order(round_no)`` gives."""
    language = str(rendered.settings.Settings.model_fields["LANGUAGE"].default)
    warning_prefix = str(rendered.texts.shared_texts(language).rate_limited).split("{", 1)[0]
    for round_no in range(config.rounds):
        for name in order(round_no):
            run = await bot_round(
                rendered, api, variants[name], config, round_no, db_url, warning_prefix
            )
            res.bot_runs.append(run)
            stored = "" if run.events_stored is None else f", {run.events_stored} events stored"
            if run.db_lost or run.upserts_deferred:
                stored += f", DB 'lost' {run.db_lost}x, {run.upserts_deferred} upserts deferred"
            progress(
                f"round {round_no + 1}/{config.rounds} {label(name):>21}:"
                f" {run.updates_per_s:7.0f} updates/s, idle RSS {run.idle_rss_kb / MIB:.1f} MiB"
                f"{stored}"
            )
            if run.error_lines:
                first = run.error_lines[0].splitlines()[0]
                res.notes.append(
                    f"{label(name)} round {run.round} logged {len(run.error_lines)} error"
                    f" record(s) (the process kept serving; details in the JSON): {first[:160]}"
                )
            if run.rate_limited:
                res.notes.append(
                    f"{label(name)} round {run.round}: {run.rate_limited} replies were the"
                    " rate-limit warning (counted as replies, not as handled /start)"
                )
            if run.events_stored is not None and run.events_stored != run.events_expected:
                res.problems.append(
                    f"{label(name)} round {run.round}: {run.events_stored} user_start events"
                    f" stored, {run.events_expected} expected"
                )
    if "seed" in variants:
        res.seed_events_stored = int(await fetchval(db_url, COUNT_STARTS, SEED_BOT_NAME))
