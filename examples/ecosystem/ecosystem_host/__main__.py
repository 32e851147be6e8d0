"""``python -m ecosystem_host BOT_DIR [BOT_DIR ...]`` runs the bots; ``--check`` is the health
check; ``--requirements``, ``--conflicts`` and ``--uses-ffmpeg`` serve the image build."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ecosystem_host import health
from ecosystem_host.bots import (
    Bot,
    NotABot,
    combined_requirements,
    conflicting_requirements,
    discover,
    read_bot,
)
from ecosystem_host.child import metrics_ports

logger = logging.getLogger("ecosystem_host")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ecosystem_host",
        description="Run generated bots as forked children of one preloaded process.",
    )
    parser.add_argument("bots", nargs="*", metavar="BOT_DIR", help="bot directories to run")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--check", action="store_true", help="health check: exit 0 while every bot polls"
    )
    group.add_argument(
        "--requirements", action="store_true", help="print every bot's dependencies (image build)"
    )
    group.add_argument(
        "--conflicts", action="store_true", help="explain which bots ask for what (image build)"
    )
    group.add_argument(
        "--uses-ffmpeg", action="store_true", help="exit 0 if any bot is a media bot (image build)"
    )
    return parser


def _build_bots(arguments: Sequence[str]) -> list[Bot]:
    bots = []
    for argument in arguments:
        try:
            bots.append(read_bot(Path(argument).resolve(), code=False))
        except NotABot as error:
            raise SystemExit(f"{argument}: {error}") from None
    return bots


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("[host] %(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.check:
        return health.main()
    if args.requirements:
        print("\n".join(combined_requirements(_build_bots(args.bots))))
        return 0
    if args.conflicts:
        lines = conflicting_requirements(_build_bots(args.bots))
        print("\n".join(lines) if lines else "no bot asks for a package differently")
        return 1 if lines else 0
    if args.uses_ffmpeg:
        return 0 if any(bot.mode == "media" for bot in _build_bots(args.bots)) else 1
    if not args.bots:
        _parser().error("name at least one bot directory")
    _setup_logging()
    stop_seconds, immortal = _stop_seconds(), _immortal_objects()  # bad values: before any work
    found = discover(args.bots)
    try:  # by the arguments' order, so that a refused bot does not move the others' ports
        by_directory = metrics_ports(os.environ, [str(Path(a).resolve()) for a in args.bots])
    except ValueError as error:
        raise SystemExit(str(error)) from None
    ports = {
        bot.slug: by_directory[str(bot.directory)]
        for bot in found.bots
        if str(bot.directory) in by_directory
    }
    for refusal in found.refusals:
        logger.error("%s", refusal)
    if not found.bots:
        logger.error("no bot could start: every bot was refused")
        return 2
    from ecosystem_host.preload import preload
    from ecosystem_host.supervisor import Supervisor

    supervisor = Supervisor(found.bots, health.health_dir(), os.environ, stop_seconds, ports)
    supervisor.refused = {r.argument: r.reason for r in found.refusals}
    preload(found.bots, immortal=immortal)
    return supervisor.run()


def _stop_seconds() -> float:
    raw = os.environ.get("HOST_STOP_SECONDS", "").strip()
    try:
        return float(raw) if raw else 25.0
    except ValueError:
        raise SystemExit(f"HOST_STOP_SECONDS must be a number of seconds (got {raw!r})") from None


def _immortal_objects() -> bool:
    raw = os.environ.get("HOST_IMMORTAL_OBJECTS", "").strip().lower()
    if raw in ("", "1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SystemExit(f"HOST_IMMORTAL_OBJECTS must be 1 or 0 (got {raw!r})")


if __name__ == "__main__":
    sys.exit(main())
