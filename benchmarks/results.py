"""What a run measured (every round kept for the JSON), and progress lines on stderr."""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


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
    db_lost: int = 0  # generated: database outages seen while PostgreSQL was up all along
    upserts_deferred: int = 0  # generated: /start user upserts that fell back to the buffer
    error_lines: list[str] = field(default_factory=list)  # ERROR/CRITICAL records, tracebacks
    scrapes: int = 0  # metrics on: GET /metrics answered during the round


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
    refs: dict[str, str] = field(default_factory=dict)  # --refs: each ref's commit
    ref_render_seconds: dict[str, list[float]] = field(default_factory=dict)
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


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
