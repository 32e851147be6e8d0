"""Broadcasts from the command line, with the bot's ``DATABASE_URL`` and ``BOT_NAME``; the
running bot sends the jobs (ecosystem_shared/broadcast_sender.py).

    python -m ecosystem_shared.broadcast create --text TEXT [--photo PATH] [--button TEXT=URL]
        [--language CODE] [--seen-days N] [--also-uses SLUG] [--dry-run] [--yes]
    python -m ecosystem_shared.broadcast list | show ID [--json] | pause ID | resume ID | cancel ID

Exit status: 0 done, 1 refused (bad message, empty audience, unknown job...), 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg

from ecosystem_shared import broadcast_store as store
from ecosystem_shared.broadcast_message import BroadcastInputError, BroadcastMessage
from ecosystem_shared.db import configure_connection

__all__ = ["main"]


def _button(value: str) -> tuple[str, str]:
    text, sep, url = value.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected TEXT=URL, not {value!r}")
    return text.strip(), url.strip()


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of days >= 1, not {value!r}")
    return int(value)


def bot_name_default() -> str | None:
    """$BOT_NAME, else the BOT_NAME default of the bot whose directory this is
    (``<package>/settings.py`` next to the working directory's ``pyproject.toml``)."""
    if os.environ.get("BOT_NAME"):
        return os.environ["BOT_NAME"]
    found = sorted(Path.cwd().glob("*/settings.py"))
    if len(found) != 1 or not (Path.cwd() / "pyproject.toml").exists():
        return None
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(f"{found[0].parent.name}.settings")
        field = module.Settings.model_fields["BOT_NAME"]
    except (ImportError, AttributeError, KeyError):
        return None
    return str(field.default) if isinstance(field.default, str) else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ecosystem_shared.broadcast", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--database-url", default=os.environ.get("DATABASE_URL"), help="default: $DATABASE_URL"
    )
    parser.add_argument(
        "--bot-name",
        default=bot_name_default(),
        help="default: $BOT_NAME, else the BOT_NAME of the bot in the working directory",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="a new job for this bot's reachable users")
    create.add_argument(
        "--text", required=True, help="HTML, as the bot sends it (a caption with --photo)"
    )
    create.add_argument("--photo", type=Path, help="a JPEG/PNG/WebP/GIF file")
    create.add_argument("--button", type=_button, help="a URL button: TEXT=URL")
    create.add_argument("--language", help="only users whose Telegram language is CODE")
    create.add_argument("--seen-days", type=_positive, help="only users seen within N days")
    create.add_argument(
        "--also-uses",
        metavar="SLUG",
        help="only users who also use this bot: its slug (BOT_SLUG), or its BOT_NAME",
    )
    create.add_argument("--dry-run", action="store_true", help="print the audience size only")
    create.add_argument("--yes", action="store_true", help="start without asking")
    commands.add_parser("list", help="recent jobs")
    show = commands.add_parser("show", help="one job's counts")
    show.add_argument("id", type=int)
    show.add_argument("--json", action="store_true")
    for action in ("pause", "resume", "cancel"):
        commands.add_parser(action, help=f"{action} a job").add_argument("id", type=int)
    return parser


def _message(args: argparse.Namespace) -> BroadcastMessage:
    photo = None
    if args.photo is not None:
        try:
            photo = args.photo.read_bytes()
        except OSError as error:
            raise BroadcastInputError(
                f"--photo: cannot read {args.photo}: {error.strerror}"
            ) from None
    text, url = args.button or (None, None)
    return BroadcastMessage(args.text, photo=photo, button_text=text, button_url=url)


def _line(job: store.JobSummary) -> str:
    reason = f" ({job.pause_reason})" if job.pause_reason else ""
    preview = " ".join(job.text.split())[:40]
    return (
        f"#{job.id} {job.state}{reason}: {job.sent}/{job.total} sent, {job.blocked} blocked,"
        f" {job.failed} failed, {job.unknown} unknown, {job.left} left"
        f" [{job.created_at:%Y-%m-%d %H:%M}] {preview}"
    )


async def _create(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    message = _message(args)
    message.check()
    audience = store.AudienceFilter(args.language, args.seen_days, args.also_uses)
    size = await store.count_audience(conn, args.bot_name, audience)
    if args.dry_run:
        print(f"Audience: {size} users")
        return 0
    if size == 0:
        raise BroadcastInputError("The audience is empty: nobody matches, nothing created")
    if not args.yes:
        if not sys.stdin.isatty():
            raise BroadcastInputError(f"Would send to {size} users: add --yes to start")
        question = f"Send to {size} users of {args.bot_name}? [y/N] "
        if (await asyncio.to_thread(input, question)).strip().lower() != "y":
            print("Nothing created")
            return 1
    job_id, total = await store.create_job(conn, args.bot_name, message, audience)
    await store.start_job(conn, job_id)
    print(job_id)
    print(f"Broadcast {job_id} to {total} users started; the running bot sends it", file=sys.stderr)
    return 0


async def _run(args: argparse.Namespace) -> int:
    conn = await asyncpg.connect(args.database_url, timeout=10)
    try:
        await configure_connection(conn)
        if args.command == "create":
            return await _create(conn, args)
        if args.command == "list":
            jobs = await store.list_jobs(conn, args.bot_name)
            print("\n".join(map(_line, jobs)) or "No broadcasts yet")
        elif args.command == "show":
            job = await store.get_job(conn, args.id)
            print(json.dumps(job.as_json(), ensure_ascii=False) if args.json else _line(job))
        else:
            state = await store.change_state(
                conn, args.id, args.command, reason="by the command line"
            )
            print(f"Broadcast {args.id}: {state}")
        return 0
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("no database: set DATABASE_URL or pass --database-url")
    if not str(args.database_url).startswith(("postgresql://", "postgres://")):
        parser.error("--database-url: expected postgresql://user:password@host:5432/database")
    if not args.bot_name:
        parser.error("no bot: set BOT_NAME (the bot's .env has it) or pass --bot-name")
    try:
        return asyncio.run(_run(args))
    except BroadcastInputError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError) as error:
        detail: Any = error
        print(f"Error: database: {type(error).__name__}: {detail}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
