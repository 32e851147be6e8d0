"""Runs the bot the way production does (``python -m <package>``) against a fake Bot API.

The process gets a clean environment: inherited bot settings (``BOT_*``, ``TELEGRAM_*``,
``DATABASE_URL`` and every other SharedSettings variable) are removed so the developer's shell
cannot leak into a test, and it runs in an empty working directory so that the repository's
``.env`` is not read either (``PYTHONPATH`` points at the repository instead).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal as signals
import sys
import tempfile
from collections.abc import Awaitable, Mapping
from pathlib import Path

from ecosystem_shared.config import SharedSettings
from ecosystem_shared.testing.fake_bot_api import FakeBotAPI
from ecosystem_shared.testing.waiting import wait_until

__all__ = ["BotProcess"]

STRIPPED_PREFIXES = ("BOT_", "TELEGRAM_")
# What ecosystem_shared.webhook logs once the server listens and Telegram knows the URL.
WEBHOOK_READY = r"Webhook (?:set to|already set to) "
STRIPPED_NAMES = frozenset(
    {*SharedSettings.model_fields, *(f"{name}_FILE" for name in SharedSettings.model_fields)}
)


def clean_environment(rootdir: Path, overrides: Mapping[str, str]) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(STRIPPED_PREFIXES) and name not in STRIPPED_NAMES
    }
    pythonpath = [str(rootdir), *filter(None, [env.get("PYTHONPATH")])]
    env.update(PYTHONPATH=os.pathsep.join(pythonpath), PYTHONUNBUFFERED="1")
    env.update(overrides)
    return env


class BotProcess:
    """``async with BotProcess("my_bot", rootdir, api, env={...}) as bot:`` -> ``bot.output``."""

    def __init__(
        self,
        module: str,
        rootdir: Path,
        api: FakeBotAPI,
        env: Mapping[str, str] | None = None,
        *,
        start_timeout: float = 30.0,  # importing aiogram alone takes ~3 s
    ) -> None:
        self.module = module
        self.rootdir = Path(rootdir)
        self.api = api
        # The working directory: empty, private to this process, removed by stop().
        self._workdir = tempfile.TemporaryDirectory(prefix="bot-process-")
        self.workdir = Path(self._workdir.name)
        base = {
            "BOT_TOKEN": api.token,
            "TELEGRAM_API_BASE_URL": api.base_url,
            "HEALTH_FILE": str(self.workdir / "alive"),  # not the shared /tmp default
        }
        self.env = clean_environment(self.rootdir, base | dict(env or {}))
        self.start_timeout = start_timeout
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._output: list[str] = []

    @property
    def output(self) -> str:
        """Everything the process printed so far (stdout and stderr interleaved)."""
        return "".join(self._output)

    async def wait_for_output(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """The first match of the regex ``pattern`` in the output (which is read as it comes)."""

        async def probe() -> re.Match[str] | None:
            return re.search(pattern, self.output)

        match = await wait_until(probe, timeout=timeout, what=f"{pattern!r} in the bot's output")
        assert match is not None
        return match

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    async def start(self, wait_polling: bool = True) -> BotProcess:
        """Start the process; by default return once it polls (``RUN_MODE=webhook``: once its
        server listens and the webhook is set), fail with its output if it dies."""
        if self._process is not None:
            raise RuntimeError("a BotProcess runs once; create another one")
        polls_before = self.api.poll_count
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            self.module,
            cwd=self.workdir,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read_output(self._process))
        if wait_polling:
            await self._wait_polling(polls_before)
        return self

    async def _read_output(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            self._output.append(line.decode("utf-8", errors="replace"))

    async def _wait_polling(self, polls_before: int) -> None:
        assert self._process is not None
        ready: Awaitable[object]
        if self.env.get("RUN_MODE") == "webhook":
            ready = self.wait_for_output(WEBHOOK_READY, self.start_timeout)
        else:
            ready = self.api.wait_for_polling(self.start_timeout, since=polls_before)
        polling = asyncio.create_task(ready)
        exited = asyncio.create_task(self._process.wait())
        await asyncio.wait({polling, exited}, return_when=asyncio.FIRST_COMPLETED)
        if polling.done() and polling.exception() is None:
            exited.cancel()
            return
        polling.cancel()
        if not exited.done():  # no getUpdates in time: do not leave the process behind
            exited.cancel()
            await self._terminate(signals.SIGKILL, 5)
        await self._finish_reading()
        raise AssertionError(
            f"python -m {self.module} did not start within {self.start_timeout} s"
            f" (exit code {self.returncode}); output:\n{self.output}"
        )

    async def stop(self, signal: signals.Signals = signals.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``signal`` and return the exit code; killed and reported if it hangs."""
        if self._process is None:
            raise RuntimeError("the bot process was not started")
        if self._process.returncode is None and not await self._terminate(signal, timeout):
            await self._terminate(signals.SIGKILL, 5)
            await self._finish_reading()
            raise AssertionError(
                f"python -m {self.module} did not exit within {timeout} s after {signal.name};"
                f" killed. Output:\n{self.output}"
            )
        await self._finish_reading()
        code = self._process.returncode
        assert code is not None
        return code

    async def _terminate(self, signal: signals.Signals, timeout: float) -> bool:
        """True if the process exited within ``timeout`` after ``signal``."""
        assert self._process is not None
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(signal)
        try:
            await asyncio.wait_for(self._process.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _finish_reading(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(TimeoutError):  # a grandchild may hold the pipe open
                await asyncio.wait_for(asyncio.shield(self._reader), 5)
        self._workdir.cleanup()

    async def __aenter__(self) -> BotProcess:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        if self._process is not None:
            await self.stop()
