"""Work done once in the parent so every forked bot shares it: imports and a warm-up.

The parent imports what the bots import — found by reading (not importing) their code — except
the bots' own packages and their ``ecosystem_shared``: two bots may be on different template
versions and each child must import its own copy. Then it runs the libraries' hot paths once
(parsing an update, dispatching it through a router and filters, building a request, reading a
response, a settings class, a scheduler trigger) so that lazily built caches and specialised
bytecode are made before the fork rather than once per child.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import gc
import importlib
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

from ecosystem_host.bots import Bot

logger = logging.getLogger("ecosystem_host")

# Never imported in the parent: each child imports its own (bot-specific versions).
_OWN = ("ecosystem_shared",)
# Test-only code of a bot (pytest, the fake Bot API) is not what production children run.
_SKIPPED_DIRS = frozenset({"testing", "tests", "__pycache__"})


def imported_modules(bots: Iterable[Bot]) -> list[str]:
    """Absolute module names the bots' production code imports, their own packages excluded."""
    names: set[str] = set()
    own = set(_OWN)
    sources: list[Path] = []
    for bot in bots:
        own.add(bot.package)
        for root in (bot.directory / "ecosystem_shared", bot.directory / bot.package):
            sources += [
                path
                for path in root.rglob("*.py")
                if not _SKIPPED_DIRS.intersection(path.relative_to(root).parts)
            ]
    for path in sources:
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (OSError, SyntaxError, ValueError):
            continue  # the child will report it when it imports the file
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
    return sorted(
        name
        for name in names
        if name.split(".")[0] not in own and name.split(".")[0] != "__future__"
    )


def import_shared(bots: Iterable[Bot]) -> tuple[list[str], list[str]]:
    """Import every module the bots use; returns (imported, failed) names."""
    imported, failed = [], []
    for name in imported_modules(bots):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a child that needs it reports the real error
            failed.append(name)
        else:
            imported.append(name)
    leaked = [name for name in sys.modules if name.split(".")[0] in _OWN]
    if leaked:  # a library imported a bot module: children would share the wrong copy
        raise RuntimeError(f"the preload imported bot code: {', '.join(sorted(leaked))}")
    return imported, failed


_WARMUP_TOKEN = "42:warm-up-token-that-is-never-sent-anywhere"
_UPDATE = {
    "update_id": 1,
    "message": {
        "message_id": 1,
        "date": 1_700_000_000,
        "chat": {"id": 7, "type": "private", "first_name": "Warm"},
        "from": {"id": 7, "is_bot": False, "first_name": "Warm", "language_code": "en"},
        "text": "/start",
        "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
    },
}


async def _aiogram_warmup() -> None:
    """Dispatch one update and build/parse one request without touching the network."""
    from aiogram import Bot, Dispatcher, F, Router
    from aiogram.filters import Command, CommandStart
    from aiogram.methods import SendMessage
    from aiogram.types import Message, Update

    router = Router()
    seen: list[int] = []

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        seen.append(message.chat.id)

    @router.message(Command("help"))
    async def help_(message: Message) -> None:  # a second filter path, never matched
        seen.append(-1)

    @router.message(F.text)
    async def text(message: Message) -> None:
        seen.append(-2)

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    bot = Bot(_WARMUP_TOKEN)
    try:
        for _ in range(3):  # a few rounds: CPython specialises after repeated executions
            update = Update.model_validate(_UPDATE, context={"bot": bot})
            await dispatcher.feed_update(bot, update)
        method = SendMessage(chat_id=7, text="<b>warm</b>", parse_mode="HTML")
        session = bot.session
        build = getattr(session, "build_form_data", None)
        if build is not None:
            build(bot, method)
        response = {"ok": True, "result": _UPDATE["message"]}
        session.check_response(bot, method, status_code=200, content=session.json_dumps(response))
    finally:
        await bot.session.close()
    if seen[:1] != [7]:
        raise RuntimeError("aiogram warm-up did not dispatch the update")


def _settings_warmup() -> None:
    from pydantic import Field, SecretStr
    from pydantic_settings import BaseSettings, SettingsConfigDict

    class WarmSettings(BaseSettings):
        model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=True)
        WARM_TOKEN: SecretStr = SecretStr("x")
        WARM_LEVEL: int = Field(default=1, ge=0)

    WarmSettings()


def _scheduler_warmup() -> None:
    from apscheduler.triggers.cron import CronTrigger

    CronTrigger(hour=0, minute=0, timezone="UTC")


def _run_aiogram_warmup() -> None:
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(_aiogram_warmup())
    finally:
        loop.close()
        asyncio.set_event_loop(None)


def warm_up() -> list[str]:
    """Run the libraries' hot paths once; returns what could not be warmed (and why)."""
    skipped = []
    steps = {
        "aiogram": _run_aiogram_warmup,
        "pydantic-settings": _settings_warmup,
        "apscheduler": _scheduler_warmup,
    }
    for name, step in steps.items():
        try:
            step()
        except Exception as error:  # noqa: BLE001 - the bots run without the warm-up
            skipped.append(f"{name}: {type(error).__name__}: {error}")
    return skipped


def preload(bots: Iterable[Bot]) -> None:
    """Imports, warm-up, then a collected and frozen heap: call right before forking."""
    gc.disable()  # no collection half-way through building what the children will share
    bots = list(bots)
    imported, failed = import_shared(bots)
    skipped = warm_up()
    with contextlib.suppress(Exception):
        # Lazily compiled regexes and the like from the warm-up stay; garbage goes.
        gc.collect()
    gc.freeze()
    logger.info(
        "preloaded %d modules for %d bot(s)%s%s",
        len(imported),
        len(bots),
        f"; not importable here: {', '.join(failed)}" if failed else "",
        f"; warm-up skipped: {'; '.join(skipped)}" if skipped else "",
    )
