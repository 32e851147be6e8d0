"""Configuration of a run: the answers rendered, the load, the targets, the command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


VARIANTS = ("bare", "seed", "generated", "metrics")
# The generated bot, with metrics off and on (METRICS_PORT, scraped every SCRAPE_SECONDS).
GENERATED = ("generated", "metrics")
SCRAPE_SECONDS = 1.0


LABELS = {
    "bare": "bare_bot.py",
    "seed": "seed_bot.py",
    "generated": "generated bot",
    "metrics": "generated, metrics on",
}


# --refs: the generated bot rendered from each git ref is the variant "generated@<ref>".
REF_VARIANT = "generated@"


def ref_variant(ref: str) -> str:
    return f"{REF_VARIANT}{ref}"


def is_generated(variant: str) -> bool:
    """A generated bot (its events are counted and its analytics counters read)."""
    return variant in GENERATED or variant.startswith(REF_VARIANT)


def label(variant: str) -> str:
    return LABELS.get(variant, variant)


TARGET_THROUGHPUT = 0.9  # generated >= 0.9 x bare updates/s, with every event stored


TARGET_RSS = 1.15  # idle generated <= 1.15 x idle bare


TARGET_METRICS = 0.95  # metrics on >= 0.95 x metrics off updates/s


TARGET_METRICS_RSS_MIB = 5.0  # idle metrics on <= metrics off + 5 MiB


TARGET_INGEST = 10.0  # batched >= 10 x per-row rows/s


SEED_EVENT = """
INSERT INTO shared.analytics_events (telegram_id, bot_name, event_type, event_data)
VALUES ($1, $2, 'user_start', NULL)
"""


COUNT_STARTS = """
SELECT count(*) FROM shared.analytics_events WHERE bot_name = $1 AND event_type = 'user_start'
"""


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
    refs: tuple[str, ...] = ()  # --refs: the generated bot of each ref against bare_bot.py


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
    parser.add_argument(
        "--refs",
        nargs="+",
        metavar="REF",
        help="render the generated bot from each git ref (HEAD: the working tree) and run them"
        " side by side with bare_bot.py, order alternating by round; ratios to the last ref",
    )
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
        refs=tuple(args.refs or ()),
    )
    positive = ("updates", "users", "rounds", "renders", "ingest_rows", "ingest_rounds")
    for name in positive:
        if getattr(config, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if config.users > config.updates:
        parser.error("--users must not exceed --updates")
    return config
