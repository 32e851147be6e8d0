"""The bot process runner of the test kit (``ecosystem_shared/testing/bot_process.py``) against
the fake Bot API."""

import asyncio
import signal
from pathlib import Path

import pytest

from ecosystem_shared.testing.bot_process import BotProcess
from ecosystem_shared.testing.fake_bot_api import FakeBotAPI
from ecosystem_shared.testing.waiting import wait_until

ECHO_BOT = """
import asyncio, os, sys
print("leaked:", os.environ.get("BOT_LEAK"), os.environ.get("DATABASE_URL"), flush=True)
print("cwd:", os.getcwd(), flush=True)
if os.environ.get("CRASH"):
    sys.exit("configuration is broken")
from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer

async def main():
    server = TelegramAPIServer.from_base(os.environ["TELEGRAM_API_BASE_URL"])
    bot = Bot(os.environ["BOT_TOKEN"], session=AiohttpSession(api=server))
    dp = Dispatcher()

    @dp.message()
    async def echo(message):
        await message.answer(message.text + os.environ.get("SUFFIX", ""))

    await dp.start_polling(bot, polling_timeout=1)

asyncio.run(main())
"""
STUBBORN = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ignoring SIGTERM", flush=True)
time.sleep(60)
"""


def write_module(root: Path, name: str, source: str) -> Path:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    (root / name / "__main__.py").write_text(source)
    return root


@pytest.mark.slow
async def test_bot_process_runs_the_module_in_a_clean_environment(
    api: FakeBotAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOT_LEAK", "from the shell")
    monkeypatch.setenv("DATABASE_URL", "postgresql://leak@nowhere/db")
    root = write_module(tmp_path, "echo_bot", ECHO_BOT)
    async with BotProcess("echo_bot", root, api, {"SUFFIX": "!"}) as bot:
        assert bot.pid is not None and bot.returncode is None
        api.push_message("ping", user_id=5)
        reply = await api.wait_for_call("sendMessage", chat_id=5)
        assert reply.params["text"] == "ping!"
        assert await bot.stop() == 0
    assert "leaked: None None" in bot.output
    assert f"cwd: {bot.workdir}" in bot.output  # not the repository: its .env is not read


async def test_bot_process_that_dies_fails_with_its_output(api: FakeBotAPI, tmp_path: Path) -> None:
    root = write_module(tmp_path, "crashing_bot", ECHO_BOT)
    bot = BotProcess("crashing_bot", root, api, {"CRASH": "1"})
    with pytest.raises(AssertionError, match="configuration is broken"):
        await bot.start()
    assert bot.returncode == 1
    assert await bot.stop() == 1


@pytest.mark.slow  # a process that has to be given a second to stop
async def test_bot_process_that_ignores_sigterm_is_killed(api: FakeBotAPI, tmp_path: Path) -> None:
    root = write_module(tmp_path, "stubborn_bot", STUBBORN)
    bot = await BotProcess("stubborn_bot", root, api).start(wait_polling=False)
    await wait_until(lambda: asyncio.sleep(0.05, bot.output), lambda out: "ignoring" in out)
    with pytest.raises(AssertionError, match="did not exit within 1 s after SIGTERM"):
        await bot.stop(timeout=1)
    assert bot.returncode == -signal.SIGKILL
