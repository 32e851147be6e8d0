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
import ctypes
import gc
import importlib
import itertools
import logging
import os
import sys
import sysconfig
import types
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any

from ecosystem_host.bots import Bot

logger = logging.getLogger("ecosystem_host")

# Never imported in the parent: each child imports its own (bot-specific versions).
_OWN = ("ecosystem_shared",)
# Test-only code of a bot (pytest, the fake Bot API) is not what production children run.
_SKIPPED_DIRS = frozenset({"testing", "tests", "__pycache__"})


def _subprocess_modules(tree: ast.AST) -> set[str]:
    """Modules a file starts as their own process: ``(sys.executable, "-m", "pkg.mod")``."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List | ast.Call):
            items = node.args if isinstance(node, ast.Call) else node.elts
            for flag, name in itertools.pairwise(items):
                if (
                    isinstance(flag, ast.Constant)
                    and flag.value == "-m"
                    and isinstance(name, ast.Constant)
                    and isinstance(name.value, str)
                ):
                    found.add(name.value)
    return found


def imported_modules(bots: Iterable[Bot]) -> list[str]:
    """Absolute module names the bots' production code imports, their own packages excluded.

    A module the bots run as a subprocess (``python -m ecosystem_shared.chart``: matplotlib,
    about 40 MiB) is no child's import, so its imports are left out.
    """
    names: set[str] = set()
    own = set(_OWN)
    trees: list[tuple[str, ast.AST]] = []  # (module name, its code)
    for bot in bots:
        own.add(bot.package)
        for root in (bot.directory / "ecosystem_shared", bot.directory / bot.package):
            for path in root.rglob("*.py"):
                if _SKIPPED_DIRS.intersection(path.relative_to(root).parts):
                    continue
                parts = path.relative_to(bot.directory).with_suffix("").parts
                module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
                try:
                    trees.append((module, ast.parse(path.read_bytes(), filename=str(path))))
                except (OSError, SyntaxError, ValueError):
                    continue  # the child will report it when it imports the file
    subprocesses = set().union(*(_subprocess_modules(tree) for _, tree in trees))
    for module, tree in trees:
        if module in subprocesses:
            continue
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
_WARMUP_UPDATES = 60  # enough executions for CPython to specialise the hot bytecode


def _update(update_id: int, text: str) -> dict[str, Any]:
    user = {"id": 7 + update_id % 5, "is_bot": False, "first_name": "Warm", "language_code": "en"}
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "date": 1_700_000_000,
            "chat": {"id": user["id"], "type": "private", "first_name": "Warm"},
            "from": user,
            "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}],
        },
    }


async def _aiogram_warmup() -> None:
    """Poll a loopback Bot API (aiohttp server in this process) and answer updates: the same
    client, dispatcher, filter and request code the bots run, executed before the fork."""
    from aiogram import Bot, Dispatcher, Router
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.filters import Command, CommandStart
    from aiogram.types import Message
    from aiohttp import web

    pending = [_update(n, "/start" if n % 3 else "/help x") for n in range(1, _WARMUP_UPDATES)]
    answered: list[int] = []
    stopping: list[asyncio.Task[None]] = []
    dispatcher = Dispatcher()

    async def api(request: web.Request) -> web.Response:
        method = request.match_info["method"].lower()
        data = dict(await request.post())
        result: Any = True
        if method == "getme":
            result = {"id": 42, "is_bot": True, "first_name": "Warm", "username": "warm_bot"}
        elif method == "getupdates":
            offset = int(str(data.get("offset", 0) or 0))
            result = [u for u in pending if u["update_id"] >= offset][:10]
            if not result and len(answered) >= len(pending) and not stopping:
                # Not awaited here: stop_polling waits for this very request to finish.
                stopping.append(asyncio.create_task(dispatcher.stop_polling()))
        elif method == "sendmessage":
            chat = int(str(data["chat_id"]))
            answered.append(chat)
            result = {
                "message_id": 1000 + len(answered),
                "date": 1_700_000_000,
                "chat": {"id": chat, "type": "private"},
                "text": data.get("text", ""),
            }
        return web.json_response({"ok": True, "result": result})

    app = web.Application()
    app.router.add_post("/bot{token}/{method}", api)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    router = Router()

    @router.message(CommandStart())
    async def start(message: Message) -> None:
        await message.answer(f"<b>Hi</b>, {message.chat.id}!", parse_mode="HTML")

    @router.message(Command("help"))
    async def help_(message: Message) -> None:
        await message.answer("help")

    dispatcher.include_router(router)
    session = AiohttpSession(api=TelegramAPIServer.from_base(f"http://127.0.0.1:{port}"))
    bot = Bot(_WARMUP_TOKEN, session=session)
    try:
        await asyncio.wait_for(
            dispatcher.start_polling(bot, polling_timeout=0, handle_signals=False), 20
        )
    finally:
        await bot.session.close()
        await runner.cleanup()
    if len(answered) < len(pending):
        raise RuntimeError(f"aiogram warm-up answered {len(answered)}/{len(pending)} updates")


def _settings_warmup() -> None:
    """A settings class with the field kinds bots use, validated from a .env and the env."""
    import datetime
    import os
    import tempfile
    from pathlib import Path
    from typing import Annotated, Literal

    from pydantic import Field, SecretStr, field_validator
    from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

    class WarmSettings(BaseSettings):
        model_config = SettingsConfigDict(
            env_file=".env", extra="ignore", case_sensitive=True, validate_default=True
        )
        WARM_TOKEN: SecretStr = SecretStr("x")
        WARM_NAME: str = Field(default="Bot", min_length=1, max_length=64)
        WARM_LANGUAGE: Literal["ru", "en"] = "ru"
        WARM_URL: SecretStr | None = None
        WARM_SIZE: int = Field(default=1, ge=0, le=50)
        WARM_SECONDS: float = Field(default=1.0, gt=0)
        WARM_FLAG: bool = True
        WARM_CHAT: int | None = Field(default=None, ge=-(2**63), lt=2**63)
        WARM_BASE: str | None = None
        WARM_TIME: datetime.time = datetime.time(0, 0)
        WARM_FILE: Path | None = Path("/tmp/warm")
        WARM_IDS: Annotated[frozenset[int], NoDecode] = frozenset()

        @field_validator("WARM_BASE", mode="before")
        @classmethod
        def _empty(cls, value: object) -> object:
            return None if value == "" else value

    class WarmChild(WarmSettings):
        WARM_NAME: str = "Warm"

    previous = os.getcwd()
    with tempfile.TemporaryDirectory() as directory:
        Path(directory, ".env").write_text("WARM_BASE=\nWARM_SIZE=2\n", encoding="utf-8")
        os.chdir(directory)
        try:
            WarmChild()
        finally:
            os.chdir(previous)


def _scheduler_warmup() -> None:
    """A started and stopped AsyncIOScheduler with a daily job, as a bot's digest schedule:
    its executor module and start path are then the parent's, not imported in every child."""
    from apscheduler.schedulers.asyncio import (  # type: ignore[import-untyped,unused-ignore]
        AsyncIOScheduler,
    )
    from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped,unused-ignore]

    async def job() -> None:
        pass

    async def run() -> None:
        scheduler = AsyncIOScheduler(timezone="UTC")
        scheduler.add_job(job, CronTrigger(hour=0, minute=0, timezone="UTC"), id="warm-up")
        scheduler.start()
        await asyncio.sleep(0)
        scheduler.shutdown(wait=False)

    _in_fresh_loop(run())


def _run_aiogram_warmup() -> None:
    _in_fresh_loop(_aiogram_warmup())


def _in_fresh_loop(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro`` in a loop of its own, closed afterwards: no loop is left for the children."""
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(coro)
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


_FILLER: list[object] = []


def _pymalloc_free_blocks() -> dict[int, int]:
    """Free blocks in partly used pymalloc pools, by block size (``sys._debugmallocstats``)."""
    import tempfile

    with tempfile.TemporaryFile() as report:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(report.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        report.seek(0)
        text = report.read().decode("ascii", "replace")
    free: dict[int, int] = {}
    sections = text.split("\n\n", 2)
    if len(sections) < 2:  # no pymalloc (PYTHONMALLOC=malloc, PYTHONTRACEMALLOC): nothing to fill
        return free
    for line in sections[1].splitlines():
        fields = line.split()
        if len(fields) == 5 and all(field.isdigit() for field in fields):
            free[int(fields[1])] = int(fields[4])
    return free


def _fill_pymalloc_holes() -> int:
    """Occupy the free blocks of the parent's partly used pools, and keep them.

    Python allocates small objects from partly used pools first: a child's first allocations
    would land in the holes the parent's imports left all over its heap, and each one copies a
    shared page. Filled, a child's new objects go to fresh pools instead. Returns the blocks.
    """
    filled = 0
    for size, count in _pymalloc_free_blocks().items():
        _FILLER.extend(_block(size) for _ in range(count))
        filled += count
    return filled


def _block(size: int) -> object:
    """A new object that pymalloc puts in the ``size``-byte class."""
    if size <= 16:
        return object()
    if size <= 32:
        return float(size) + 0.5  # 24 bytes
    return bytes(size - sys.getsizeof(b""))


# CPython 3.12 and 3.13 (PEP 683): an object whose reference count has its low 32 bits all set is
# immortal, and Py_INCREF/Py_DECREF leave it alone (Include/object.h: _Py_IMMORTAL_REFCNT is
# UINT_MAX on 64-bit builds; pyo3-ffi's object.rs mirrors it). 3.14 moved to another encoding
# (ob_flags), debug builds with Py_TRACE_REFS put two pointers before the count and free-threaded
# builds split it: there, and on 3.11 which has no immortal objects, nothing is changed.
_IMMORTAL = 0xFFFFFFFF


def immortal_objects_unsupported() -> str | None:
    """Why this interpreter's objects cannot be made immortal, or None when they can."""
    version = ".".join(map(str, sys.version_info[:2]))
    if sys.implementation.name != "cpython" or not (3, 12) <= sys.version_info[:2] < (3, 14):
        return f"{sys.implementation.name} {version}: CPython 3.12 or 3.13 only"
    if ctypes.sizeof(ctypes.c_void_p) != 8 or hasattr(sys, "getobjects"):
        return f"Python {version}: a 32-bit or Py_TRACE_REFS build"
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return f"Python {version}: a free-threaded build"
    return None


def immortalise_heap() -> int:
    """Make every object the parent holds immortal; returns how many were changed.

    A child that merely uses a shared function, class, string or constant writes its reference
    count, which copies the 4 KiB page it sits on: that was about half of a child's private
    memory. An immortal object is never written by reference counting, nor freed: what a child
    drops or replaces stays in the shared pages, a bounded cost paid once. The walk goes from
    the collector's objects through their referents, and into code objects (which the collector
    does not track) through their constants and names. An object already immortal (None, small
    ints, interned strings, or one this walk reached before) is skipped: the count is the mark.
    """
    if immortal_objects_unsupported():
        return 0
    offset = 0 if sys.byteorder == "little" else 4  # the low 32 bits of the 64-bit count
    ones = _IMMORTAL.to_bytes(4, sys.byteorder)
    stack = gc.get_objects()
    changed = 0
    while stack:
        obj = stack.pop()
        if sys.getrefcount(obj) >= _IMMORTAL:
            continue
        ctypes.memmove(id(obj) + offset, ones, 4)
        changed += 1
        stack.extend(gc.get_referents(obj))
        if isinstance(obj, types.CodeType):
            stack.extend((obj.co_consts, obj.co_names, obj.co_filename, obj.co_name))
            stack.extend((obj.co_qualname, obj.co_linetable, obj.co_exceptiontable))
    return changed


def _release_free_heap() -> None:
    """Give the C heap's free pages back to the kernel before forking (glibc ``malloc_trim``):
    neither the parent nor any child then keeps them resident."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def preload(bots: Iterable[Bot], immortal: bool = True) -> None:
    """Imports, warm-up, then a collected, immortal (3.12+) and frozen heap: call right before
    forking. ``immortal=False`` (``HOST_IMMORTAL_OBJECTS=0``) keeps reference counting as is."""
    gc.disable()  # no collection half-way through building what the children will share
    bots = list(bots)
    imported, failed = import_shared(bots)
    skipped = warm_up()
    gc.collect()  # the warm-up's garbage goes; what it cached (regexes, schemas) stays
    if not immortal:
        immortals = "off (HOST_IMMORTAL_OBJECTS=0)"
    else:
        immortals = immortal_objects_unsupported() or str(immortalise_heap())
    filled = _fill_pymalloc_holes()
    gc.freeze()
    _release_free_heap()
    logger.info(
        "preloaded %d modules for %d bot(s); immortal objects: %s; %d heap holes filled%s%s",
        len(imported),
        len(bots),
        immortals,
        filled,
        f"; not importable here: {', '.join(failed)}" if failed else "",
        f"; warm-up skipped: {'; '.join(skipped)}" if skipped else "",
    )
