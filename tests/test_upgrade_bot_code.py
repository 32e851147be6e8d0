"""The 0.2.0 migration (scripts/upgrade_bot_code.py, copier.yml `_migrations`) on real bots.

A bot made by the 0.1.0 release commit is updated to the working tree: files still as 0.1.0
rendered them are converted (tests/test_upgrade_path.py then runs the whole CI on such bots); a
file the author edited is left byte for byte and its manual step printed; and the template-owned
tests that build several dispatchers pass on the module-level routers such a bot keeps. The
edits themselves are checked on small sources below.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.helpers import PYTHON, REPO_ROOT, assert_ok, child_env, run
from tests.test_update import _git_identity, commit_all, git  # noqa: F401 - autouse identity
from tests.test_upgrade_path import (
    COPIER_UPDATE,
    Release,
    Template,
    earlier_releases,
    module_level_routers,
    render_old_bot,
    template,  # noqa: F401 - the fixture
)

sys.path.insert(0, str(REPO_ROOT / "scripts"))  # scripts/ is not a package
import upgrade_bot_code as upgrade

MIGRATION = (PYTHON, str(REPO_ROOT / "scripts" / "upgrade_bot_code.py"))
EVERY_TEST = (PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "slow or not slow")
OLD_HANDLER = '''"""A handler module as 0.1.0 generated them."""

from aiogram import F, Router
from aiogram.filters import Command

router = Router(name="things")


@router.startup()
async def open_things() -> None:
    pass


@router.message(Command("thing"))
@router.message(F.text == "a thing", flags={"long_operation": "typing"})
async def thing() -> None:
    pass


@router.callback_query(F.data == "press", F.from_user.id.in_({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}))
async def press() -> None:
    pass
'''


def test_router_factory_registers_the_same_handlers_in_the_same_order() -> None:
    converted = upgrade.router_factory(OLD_HANDLER)
    assert converted is not None
    assert "router = Router" not in converted and "@router" not in converted
    assert (
        '''

def router() -> Router:
    """A fresh router per call (one per dispatcher)."""
    routes = Router(name="things")
    routes.startup.register(open_things)
    routes.message.register(thing, F.text == "a thing", flags={"long_operation": "typing"})
    routes.message.register(thing, Command("thing"))
    routes.callback_query.register(
        press, F.data == "press", F.from_user.id.in_({1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
    )
    return routes


async def open_things() -> None:'''
        in converted
    )
    ast.parse(converted)
    assert upgrade.router_factory(converted) is None  # converted once


def test_a_router_used_otherwise_is_left_for_the_author() -> None:
    extra = OLD_HANDLER + "\n\nrouter.message.middleware(object())\n"
    assert upgrade.router_factory(extra) is None


def test_build_router_calls_the_factories() -> None:
    source = "from . import help, start\n\n\ndef build_router() -> Router:\n"
    source += "    router = Router()\n    router.include_routers(\n        start.router,\n"
    source += "        help.router,\n    )\n    return router\n"
    converted = upgrade.call_router_factories(source)
    assert converted is not None
    assert "        start.router(),\n        help.router(),\n" in converted
    assert upgrade.call_router_factories(converted) is None


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "from ecosystem_shared.a import b\nfrom my_bot.c import d\n\nX = 1\n",
            "from ecosystem_shared.a import b\n\nfrom my_bot.c import d\n\nX = 1\n",
        ),
        (  # a package that sorted before ecosystem_shared
            "from my_bot.c import (\n    d,\n)\nfrom ecosystem_shared.a import b\n",
            "from ecosystem_shared.a import b\n\nfrom my_bot.c import (\n    d,\n)\n",
        ),
        ("from ecosystem_shared.a import b\n\nfrom my_bot.c import d\n", None),
    ],
)
def test_ecosystem_imports_get_their_own_group(source: str, expected: str | None) -> None:
    assert upgrade.ecosystem_import_group(source, "my_bot") == expected


# ------------------------------------------------------------------------- on real bots
def first_release() -> Release:
    found = earlier_releases()
    if not found:
        pytest.fail("no earlier release in the history (see tests/test_upgrade_path.py)")
    return found[0]


def test_an_edited_file_is_left_and_its_manual_step_printed(
    template: Template,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    """The author changed start.py after 0.1.0: the update converts every other handler and
    leaves start.py as it was, with what to do printed; the template's dispatcher tests pass on
    the module-level router start.py keeps."""
    old = first_release()
    bot = render_old_bot(template, old, {"bot_name": "Text Bot"}, tmp_path / "bot")
    start = bot / "text_bot/handlers/start.py"
    edited = start.read_text(encoding="utf-8") + "\n\n# Our own note.\n"
    start.write_text(edited, encoding="utf-8")
    commit_all(bot, "the author's edit")
    if module_level_routers(bot) == []:
        pytest.skip(f"{old.tag} generated no module-level routers")

    update = run([*COPIER_UPDATE, "--vcs-ref", template.target], bot, timeout=300, env=child_env())
    assert_ok(update, "copier update")
    assert start.read_text(encoding="utf-8") == edited
    assert module_level_routers(bot) == ["text_bot/handlers/start.py"]
    assert "left text_bot/handlers/start.py as it is" in update.stdout, update.stdout
    assert "def router() -> Router" in update.stdout  # the step, in words
    assert "updated text_bot/handlers/help.py" in update.stdout
    build = (bot / "text_bot/handlers/__init__.py").read_text(encoding="utf-8")
    assert "        start.router,\n" in build and "        help.router(),\n" in build

    # Until the author does the step, the template-owned tests that build several dispatchers
    # in one process pass on the module-level router start.py keeps (in_process_bot).
    suite = run(
        [*EVERY_TEST, "tests/shared/test_dispatcher.py", "tests/shared/test_fsm_memory.py"],
        bot,
        timeout=600,
        env=child_env(),
    )
    assert_ok(suite, "the dispatcher tests on a module-level router")
    assert " passed" in suite.stdout


def test_the_check_mode_changes_nothing(template: Template, tmp_path: Path) -> None:  # noqa: F811
    old = first_release()
    bot = render_old_bot(template, old, {"bot_name": "Text Bot", "crm": True}, tmp_path / "bot")
    before = {path: path.read_bytes() for path in bot.rglob("*.py")}
    done = run(
        [*MIGRATION, "--check", "--template", str(template.path), "--from", old.tag],
        bot,
        timeout=120,
        env=child_env(),
    )
    assert_ok(done, "upgrade_bot_code.py --check")
    assert {path: path.read_bytes() for path in bot.rglob("*.py")} == before
    if module_level_routers(bot):
        assert "would update text_bot/handlers/crm.py" in done.stdout, done.stdout
    # ADMIN_USER_IDS is a shared setting in 0.1.0 and since the broadcasts: settings.py stays.
    assert "settings.py" not in done.stdout and "ADMIN_USER_IDS" not in done.stdout, done.stdout
    assert git(bot, "status", "--porcelain") == ""
