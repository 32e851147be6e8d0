"""The ecosystem's host (``python -m ecosystem_host``): real bot processes forked from one parent.

A rendered ecosystem with three rendered bots of different kinds (text, media with the Local Bot
API settings, CRM) runs under the host against real PostgreSQL and one fake Bot API server per
bot (each bot's own token and URL come from its own ``.env``, as in production). Covered: every
bot answers, ``kill -9`` of one child (restarted, answers again, the others lose nothing),
SIGTERM (every event stored, exit 0), each bot importing its own ``ecosystem_shared``, the
refusals, a broken ``.env`` and the health check (the deployment files: test_host_files.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from devkit.interpreters import IMMORTAL_VERSIONS, bots_venv, immortal_capable_python, version_of
from devkit.render import copy_template
from devkit.testkit import shared_module
from tests.deployment import fill_env_example
from tests.helpers import PYTHON, assert_ok, run
from tests.test_backups import server_url  # noqa: F401 - a fixture

HOST = pytest.mark.xdist_group("host")
# Three kinds of bot; tokens differ, so a leaked token would be refused by the bot's fake API.
BOTS: dict[str, dict[str, Any]] = {
    "text-bot": {"bot_name": "Text Bot", "mode": "text"},
    "media-bot": {"bot_name": "Media Bot", "mode": "media", "local_bot_api": True},
    "crm-bot": {"bot_name": "CRM Bot", "crm": True},
}
TOKENS = {slug: f"{7000 + n}:host-test-token-{slug}" for n, slug in enumerate(BOTS)}
MARKER = "ecosystem_shared imported from"


fake_bot_api = shared_module("testing.fake_bot_api")  # the bots' own fake, from template/


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ecosystem(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ecosystem directory in host mode with the three bots cloned into it."""
    eco = tmp_path_factory.mktemp("host") / "eco"
    copy_template(
        eco,
        {"project_type": "ecosystem", "bots": ",".join(BOTS), "deployment": "host"},
    )
    for slug, answers in BOTS.items():
        copy_template(eco / slug, {"bot_slug": slug, "language": "en", **answers})
        # Each copy of ecosystem_shared says where it was imported from (the bots' template
        # versions may differ: each child must import its own).
        init = eco / slug / "ecosystem_shared" / "__init__.py"
        init.write_text(
            init.read_text(encoding="utf-8")
            + f"\nimport sys as _sys\n\nprint('{MARKER}', __file__, file=_sys.stderr)\n",
            encoding="utf-8",
        )
    return eco


@pytest.fixture(scope="module")
def immortal_python(ecosystem: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A CPython 3.12/3.13 virtualenv with the three bots' dependencies (the host image's
    interpreter is 3.12: there the host makes its preloaded heap immortal)."""
    base = immortal_capable_python()
    if base is None:
        pytest.skip("no CPython 3.12 or 3.13 on this machine (set HOST_TEST_PYTHON)")
    venv = tmp_path_factory.mktemp("immortal-python") / "venv"
    return bots_venv(base, ecosystem, list(BOTS), venv)


@pytest.fixture(params=["pytest's python", "python 3.12+"])
def host_python(request: pytest.FixtureRequest) -> str:
    """The interpreter the host runs on: pytest's own, and a 3.12+ one (immortal objects)."""
    if request.param == "pytest's python":
        return PYTHON
    python = request.getfixturevalue("immortal_python")
    assert isinstance(python, str)
    return python


def write_env(bot_dir: Path, **values: str) -> None:
    """The bot's ``.env``: its ``.env.example`` with ``values`` set."""
    text = fill_env_example(bot_dir / ".env.example", values)
    (bot_dir / ".env").write_text(text, encoding="utf-8")


async def _admin(url: str, sql: str) -> None:
    async with asyncpg.create_pool(url, min_size=1, max_size=1) as pool:
        await pool.execute(sql)


@pytest.fixture
def database_url(server_url: str) -> Iterator[str]:  # noqa: F811 - the imported fixture
    name = f"host_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield re.sub(r"/[^/?]*(\?|$)", f"/{name}\\1", server_url, count=1)
    finally:
        asyncio.run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# ------------------------------------------------------------------------------- the host


class HostProcess:
    """``python -m ecosystem_host ARGS`` from the ecosystem directory, output collected."""

    def __init__(
        self, eco: Path, args: list[str], health: Path, python: str = PYTHON, **env: str
    ) -> None:
        self.eco, self.args, self.health, self.python = eco, args, health, python
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
        self.env = base | {"HOST_HEALTH_DIR": str(health), "PYTHONUNBUFFERED": "1"} | env
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    @property
    def output(self) -> str:
        return "".join(self.lines)

    async def start(self) -> HostProcess:
        self.process = await asyncio.create_subprocess_exec(
            self.python,
            "-m",
            "ecosystem_host",
            *self.args,
            cwd=self.eco,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[HostProcess]:
        """Started; on a failure inside, killed and its output printed (pytest shows it)."""
        await self.start()
        try:
            yield self
        except BaseException:
            if self.process is not None and self.process.returncode is None:
                self.process.kill()
            print(self.output)
            raise

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for line in self.process.stdout:
            self.lines.append(line.decode("utf-8", "replace"))

    async def wait_for(self, pattern: str, timeout: float = 60.0, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while len(re.findall(pattern, self.output, re.M)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} in the host's output:\n{self.output}")
            if self.process is not None and self.process.returncode is not None:
                raise AssertionError(f"the host exited ({self.process.returncode}):\n{self.output}")
            await asyncio.sleep(0.05)

    def state(self) -> dict[str, Any]:
        loaded = json.loads((self.health / "state.json").read_text(encoding="utf-8"))
        assert isinstance(loaded, dict)
        return loaded

    async def stop(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signum)
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(f"the host did not stop in {timeout} s:\n{self.output}") from None
        if self._reader is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reader, 5)
        return code

    async def exit_code(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        code = await asyncio.wait_for(self.process.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 5)
        return code


@contextlib.asynccontextmanager
async def fake_apis(slugs: list[str]) -> AsyncIterator[dict[str, Any]]:
    apis = {slug: fake_bot_api.FakeBotAPI(TOKENS[slug]) for slug in slugs}
    for api in apis.values():
        await api.start()
    try:
        yield apis
    finally:
        for api in apis.values():
            await api.stop()


def bot_env(api: Any, database_url: str, **extra: str) -> dict[str, str]:
    return {
        "BOT_TOKEN": api.token,
        "TELEGRAM_API_BASE_URL": api.base_url,
        "DATABASE_URL": database_url,
        "ANALYTICS_FLUSH_SECONDS": "0.2",
        "RATE_LIMIT_SECONDS": "0",
        **extra,
    }


@dataclass
class Traffic:
    """/start from fresh users, and what each bot answered."""

    next_user: int = 100_000

    async def starts(self, api: Any, count: int, timeout: float = 30.0) -> list[int]:
        users = list(range(self.next_user, self.next_user + count))
        self.next_user += count
        for user in users:
            api.push_message("/start", user_id=user, first_name=f"U{user}")
        for user in users:
            await api.wait_for_call("sendMessage", timeout=timeout, chat_id=user)
        return users


async def stored_starts(database_url: str) -> dict[str, set[int]]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT bot_name, telegram_id FROM shared.analytics_events"
            " WHERE event_type = 'user_start'"
        )
    finally:
        await conn.close()
    found: dict[str, set[int]] = {}
    for row in rows:
        found.setdefault(row["bot_name"], set()).add(row["telegram_id"])
    return found


async def wait_stored(database_url: str, bot_name: str, users: list[int]) -> None:
    deadline = time.monotonic() + 15
    while not set(users) <= (await stored_starts(database_url)).get(bot_name, set()):
        assert time.monotonic() < deadline, f"{bot_name}: events of {users} not stored"
        await asyncio.sleep(0.1)


def names() -> dict[str, str]:
    return {slug: str(answers["bot_name"]) for slug, answers in BOTS.items()}


def child_pid(host: HostProcess, slug: str) -> int:
    pid = host.state()["bots"][slug]["pid"]
    assert isinstance(pid, int)
    return pid


def process_titles(pid: int) -> set[str]:
    """The kernel's name (prctl fallback) and the command line (setproctitle when installed)."""
    comm = Path(f"/proc/{pid}/comm").read_text(encoding="utf-8").strip()
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    return {comm, cmdline}


async def check(host: HostProcess) -> tuple[int, str]:
    """The image's HEALTHCHECK command, run next to the host."""
    process = await asyncio.create_subprocess_exec(
        PYTHON,
        "-m",
        "ecosystem_host",
        "--check",
        cwd=host.eco,
        env={**os.environ, "HOST_HEALTH_DIR": str(host.health)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()


# ------------------------------------------------------------------------------- scenarios


@HOST
def test_three_bots_answer_survive_a_killed_child_and_stop_cleanly(
    ecosystem: Path, database_url: str, tmp_path: Path, host_python: str
) -> None:
    async def scenario() -> None:
        async with fake_apis(list(BOTS)) as apis:
            # The database comes from the host (ALL_BOTS_DATABASE_URL wins over each .env, as
            # compose's DATABASE_URL does for separate services): were it not passed on, no
            # event would be stored.
            nowhere = "postgresql://nobody@127.0.0.1:9/none"
            for slug, api in apis.items():
                write_env(ecosystem / slug, **bot_env(api, nowhere))
            # A token and an API URL in the host's environment must reach no bot (each would
            # then poll the wrong server with the wrong token and never answer).
            host = HostProcess(
                ecosystem,
                list(BOTS),
                tmp_path / "health",
                host_python,
                BOT_TOKEN="1:leaked-token-of-nobody",
                TELEGRAM_API_BASE_URL="http://127.0.0.1:9",
                DATABASE_URL=nowhere,
                ALL_BOTS_DATABASE_URL=database_url,
                ALL_BOTS_BOT_TOKEN="1:shared-token-is-refused",
            )
            traffic = Traffic()
            answered: dict[str, list[int]] = {slug: [] for slug in BOTS}
            async with host.running():
                for slug in BOTS:
                    await host.wait_for(rf"^\[host\] .* {slug}: polling \(pid \d+", 90)
                for slug, api in apis.items():
                    answered[slug] += await traffic.starts(api, 3)
                # On 3.12+ the preloaded heap is immortal (and the bots run on it); before, it
                # cannot be and the log says why.
                immortal = re.search(r"immortal objects: ([^;]+);", host.output)
                assert immortal, host.output
                if version_of(host_python) in IMMORTAL_VERSIONS:
                    assert int(immortal[1]) > 100_000, immortal[1]
                else:
                    assert "CPython 3.12 or 3.13 only" in immortal[1], immortal[1]
                # One status line per bot, the process titles, each its own ecosystem_shared.
                for slug in BOTS:
                    titles = process_titles(child_pid(host, slug))
                    assert {f"bot:{slug}"[:15], f"bot:{slug}"} & titles, titles
                    own = ecosystem / slug / "ecosystem_shared" / "__init__.py"
                    assert f"[{slug}] {MARKER} {own}" in host.output
                    assert len(re.findall(rf"^\[{slug}\] {MARKER}", host.output, re.M)) == 1
                code, text = await check(host)
                assert code == 0, text
                assert "ALL_BOTS_BOT_TOKEN ignored" in host.output

                # kill -9 one child: restarted, answers again; the others never stop answering.
                victim, survivors = "media-bot", ["text-bot", "crm-bot"]
                # A SIGKILL loses the victim's unflushed buffer (by nature): let it flush first.
                await wait_stored(database_url, BOTS[victim]["bot_name"], answered[victim])
                old_pid = child_pid(host, victim)
                os.kill(old_pid, signal.SIGKILL)
                killed_at = time.monotonic()
                for slug in survivors:  # served while the victim is down
                    answered[slug] += await traffic.starts(apis[slug], 5)
                await host.wait_for(rf"{victim}: killed by SIGKILL after .*; restarting in 1 s")
                answered[victim] += await traffic.starts(apis[victim], 2, timeout=30)
                again = time.monotonic() - killed_at
                assert child_pid(host, victim) != old_pid
                await host.wait_for(rf"{victim}: polling \(pid \d+, .* after restart 1\)")
                assert again < 15, f"the killed bot answered again after {again:.1f} s"
                for slug in survivors:
                    answered[slug] += await traffic.starts(apis[slug], 2)

                code = await host.stop(signal.SIGTERM)
            assert code == 0, host.output
            assert re.search(r"\[host\] .* stopped cleanly", host.output), host.output
            for slug in BOTS:
                assert re.search(
                    rf"\[host\] .* {slug}: stopped \(exited with status 0\)", host.output
                ), host.output
            # Every /start answered before SIGTERM is stored: survivors lost nothing, and the
            # flush on SIGTERM wrote the last events of every bot.
            stored = await stored_starts(database_url)
            for slug, name in names().items():
                missing = set(answered[slug]) - stored.get(name, set())
                assert not missing, f"{slug}: {len(missing)} events lost: {sorted(missing)}"
            assert "leaked-token" not in host.output

    asyncio.run(scenario())


@HOST
def test_refusals_and_a_broken_env_leave_the_other_bots_running(
    ecosystem: Path, database_url: str, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with fake_apis(["text-bot", "crm-bot"]) as apis:
            write_env(ecosystem / "text-bot", **bot_env(apis["text-bot"], database_url))
            # crm-bot: a malformed setting in its .env.
            crm_env = bot_env(apis["crm-bot"], database_url, RATE_LIMIT_SECONDS="soon")
            write_env(ecosystem / "crm-bot", **crm_env)
            # media-bot: the same token as text-bot.
            write_env(ecosystem / "media-bot", **bot_env(apis["text-bot"], database_url))
            not_a_bot = tmp_path / "notes"
            not_a_bot.mkdir()
            (not_a_bot / "README.md").write_text("hello", encoding="utf-8")
            # A copy of text-bot that needs a dependency this environment does not have.
            needy = tmp_path / "needy-bot"
            copy_template(needy, {"bot_slug": "needy-bot", "mode": "text"})
            pyproject = needy / "pyproject.toml"
            pyproject.write_text(
                pyproject.read_text(encoding="utf-8").replace(
                    '"aiogram>=3.13,<4"', '"aiogram>=99"'
                ),
                encoding="utf-8",
            )
            args = ["text-bot", "crm-bot", "media-bot", "./text-bot", str(not_a_bot), str(needy)]
            # HOST_IMMORTAL_OBJECTS=0: the preload leaves reference counting alone, and says so.
            host = HostProcess(ecosystem, args, tmp_path / "health", HOST_IMMORTAL_OBJECTS="0")
            async with host.running():
                await host.wait_for(r"text-bot: polling", 90)
                await host.wait_for(r"crm-bot: configuration error")
                assert "immortal objects: off (HOST_IMMORTAL_OBJECTS=0);" in host.output
                await Traffic().starts(apis["text-bot"], 2)
                out = host.output
                assert re.search(r"media-bot: refused: its BOT_TOKEN is the one of text-bot", out)
                assert re.search(r"\./text-bot: refused: the same directory as text-bot", out)
                assert re.search(rf"{re.escape(str(not_a_bot))}: refused: no pyproject.toml", out)
                assert re.search(
                    r"needy-bot: refused: dependencies not satisfied.*aiogram>=99", out
                )
                assert TOKENS["text-bot"] not in out
                # Reported once, naming the variable; not restarted in a loop.
                line = r"crm-bot: configuration error in .*\.env: RATE_LIMIT_SECONDS"
                await asyncio.sleep(3)
                assert len(re.findall(line, host.output)) == 1, host.output
                assert len(re.findall(r"\[crm-bot\] Configuration error", host.output)) == 1
                code, text = await check(host)
                assert code == 1 and "crm-bot: config-error" in text, text
                assert "media-bot: refused" in text, text

                # Fixed .env: started again without restarting the host, and answers.
                write_env(ecosystem / "crm-bot", **bot_env(apis["crm-bot"], database_url))
                await host.wait_for(r"crm-bot: polling", 60)
                await Traffic(200_000).starts(apis["crm-bot"], 1)
                code = await host.stop()
            assert code == 0, host.output

    asyncio.run(scenario())


@HOST
def test_no_bot_can_start_exits_non_zero(ecosystem: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        (ecosystem / "text-bot" / ".env").write_text("BOT_TOKEN=\n", encoding="utf-8")
        host = HostProcess(ecosystem, ["text-bot"], tmp_path / "health")
        await host.start()
        assert await host.exit_code(90) == 2, host.output
        assert "text-bot: configuration error" in host.output
        assert "BOT_TOKEN" in host.output and "no bot could start" in host.output

        host = HostProcess(ecosystem, [str(tmp_path)], tmp_path / "health")
        await host.start()
        assert await host.exit_code(30) == 2, host.output
        assert "refused: no pyproject.toml" in host.output

    asyncio.run(scenario())


# ------------------------------------------------------------------------------- image build


@HOST
def test_a_bad_host_setting_stops_the_host_before_any_work(ecosystem: Path) -> None:
    for name, value in (("HOST_IMMORTAL_OBJECTS", "maybe"), ("HOST_STOP_SECONDS", "soon")):
        env = os.environ | {name: value, "HOST_HEALTH_DIR": str(ecosystem / ".health")}
        started = run([PYTHON, "-m", "ecosystem_host", *BOTS], ecosystem, timeout=60, env=env)
        assert started.returncode not in (0, -9), started.stdout
        assert f"{name} must be" in started.stdout and repr(value) in started.stdout
        assert "preloaded" not in started.stdout and "polling" not in started.stdout


def _cow_probe(python: str, mode: str, ecosystem: Path) -> dict[str, int]:
    probe = Path(__file__).with_name("cow_probe.py")
    env = os.environ | {"PYTHONPATH": str(ecosystem)}
    done = run([python, str(probe), mode], ecosystem, timeout=120, env=env)
    assert_ok(done, f"cow_probe.py {mode}")
    report = json.loads(done.stdout.splitlines()[-1])
    assert isinstance(report, dict)
    return report


@HOST
def test_an_immortal_heap_is_not_copied_by_children(ecosystem: Path) -> None:
    """A child that only calls the parent's functions and reads its strings copies the pages
    they sit on (reference counts), unless the preload made them immortal (3.12+)."""
    python = immortal_capable_python()
    if python is None:
        pytest.skip("no CPython 3.12 or 3.13 on this machine (set HOST_TEST_PYTHON)")
    mortal = _cow_probe(python, "mortal", ecosystem)
    immortal = _cow_probe(python, "immortal", ecosystem)
    assert mortal["immortal"] == 0 and mortal["refcount"] < 10, mortal
    assert mortal["growth_kib"] > 20_000, mortal  # the probe's heap: about 33 MiB written
    assert immortal["immortal"] > 80_000 and immortal["refcount"] == 0xFFFFFFFF, immortal
    assert immortal["growth_kib"] < mortal["growth_kib"] / 2, (mortal, immortal)


@HOST
def test_no_immortal_objects_where_the_interpreter_has_none(ecosystem: Path) -> None:
    if version_of(PYTHON) in IMMORTAL_VERSIONS:
        pytest.skip("pytest runs on 3.12+: the interpreters without immortal objects are others")
    report = _cow_probe(PYTHON, "immortal", ecosystem)
    assert report["immortal"] == 0 and report["refcount"] < 10, report


@HOST
def test_build_helpers_name_the_bots(ecosystem: Path, tmp_path: Path) -> None:
    def helper(*args: str) -> Any:
        return run([PYTHON, "-m", "ecosystem_host", *args], ecosystem, timeout=60)

    listed = helper("--requirements", *BOTS)
    assert_ok(listed, "--requirements")
    assert any(line.startswith("aiogram") for line in listed.stdout.splitlines())
    assert helper("--uses-ffmpeg", *BOTS).returncode == 0
    assert helper("--uses-ffmpeg", "text-bot", "crm-bot").returncode == 1
    assert "no bot asks" in helper("--conflicts", *BOTS).stdout

    other = tmp_path / "old-bot"
    copy_template(other, {"bot_slug": "old-bot"})
    pyproject = other / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8").replace('"aiogram>=3.13,<4"', '"aiogram<3"')
    pyproject.write_text(text, encoding="utf-8")
    conflicts = helper("--conflicts", "text-bot", str(other))
    assert conflicts.returncode == 1
    assert "aiogram: text-bot requires aiogram>=3.13,<4; old-bot requires aiogram<3" in (
        conflicts.stdout
    )


@HOST
def test_preload_leaves_out_what_only_a_subprocess_imports(ecosystem: Path) -> None:
    """The digest chart runs as ``python -m ecosystem_shared.chart``: no child imports
    matplotlib, so the parent must not spend ~40 MiB on it; what children import stays."""
    code = (
        "from pathlib import Path\n"
        "from ecosystem_host.bots import read_bot\n"
        "from ecosystem_host.bot_imports import imported_modules\n"
        f"bots = [read_bot(Path(s).resolve(), code=False) for s in {list(BOTS)!r}]\n"
        "print('\\n'.join(imported_modules(bots)))\n"
    )
    listed = run([PYTHON, "-c", code], ecosystem, timeout=60)
    assert_ok(listed, "imported_modules")
    modules = set(listed.stdout.split())
    assert {"aiogram", "asyncpg", "pydantic_settings"} <= modules
    assert not [m for m in modules if m.split(".")[0] in ("matplotlib", "numpy")]


@HOST
@pytest.mark.parametrize("variable", ["PYTHONMALLOC=malloc", "PYTHONTRACEMALLOC=1"])
def test_preload_runs_without_pymalloc(ecosystem: Path, variable: str) -> None:
    """With pymalloc replaced or wrapped there are no pool statistics: nothing to fill, and the
    host starts (it crashed on the missing section)."""
    name, _, value = variable.partition("=")
    code = "from ecosystem_host.heap import fill_pymalloc_holes as f; print(f())"
    filled = run([PYTHON, "-c", code], ecosystem, timeout=60, env=os.environ | {name: value})
    assert_ok(filled, variable)
    assert filled.stdout.split() == ["0"]
