"""The 0.3.0 migration of media bots (copier.yml `_migrations` -> scripts/move_module.py).

A media bot made by the last release before 0.3.0 keeps the Wildberries client in its own package
(``services/media.py``, ``services/wb_routes.py``). Updated to the working tree, the files still as
that release rendered them go and the bot's imports follow them to ``ecosystem_shared/wildberries``;
a file the owner changed stays byte for byte, its imports stay, and the manual step is printed.
tests/test_upgrade_path.py runs the whole CI of such updated bots (from every release).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.version import Version

from tests.helpers import PYTHON, assert_ok, child_env, run
from tests.test_update import _git_identity, commit_all  # noqa: F401 - autouse identity
from tests.test_upgrade_path import (
    COPIER_UPDATE,
    Release,
    Template,
    earlier_releases,
    render_old_bot,
    template,  # noqa: F401 - the fixture
)

MEDIA_BOT = {"bot_name": "Media Bot", "mode": "media"}
PACKAGE = "media_bot"
OLD_CLIENT = f"{PACKAGE}/services/media.py"
OLD_TABLE = f"{PACKAGE}/services/wb_routes.py"


# The release whose migration moves the client: bots of the releases before it hold their own.
MIGRATION = Version("0.3.0")


def last_release() -> Release:
    """The newest release before the migration (later ones ship the client template-owned)."""
    found = [item for item in earlier_releases() if item.version < MIGRATION]
    if not found:
        pytest.fail("no release before 0.3.0 in the history (see tests/test_upgrade_path.py)")
    return found[-1]


def update(bot: Path, to: Template) -> str:
    done = run([*COPIER_UPDATE, "--vcs-ref", to.target], bot, timeout=300, env=child_env())
    assert_ok(done, "copier update")
    return done.stdout  # stderr joined in (tests.helpers.run)


def read(bot: Path, path: str) -> str:
    return (bot / path).read_text(encoding="utf-8")


def test_the_old_client_goes_and_the_imports_follow(
    template: Template,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    bot = render_old_bot(template, last_release(), MEDIA_BOT, tmp_path / "bot")
    assert (bot / OLD_CLIENT).is_file() and (bot / OLD_TABLE).is_file()

    out = update(bot, template)

    assert not (bot / OLD_CLIENT).exists() and not (bot / OLD_TABLE).exists(), out
    assert f"removed {OLD_CLIENT}" in out
    handler = read(bot, f"{PACKAGE}/handlers/media.py")
    assert "from ecosystem_shared.wildberries import (\n" in handler
    assert "services.media" not in handler
    assert "from ecosystem_shared.wildberries import ROUTE_MAP_URL" in read(
        bot, f"{PACKAGE}/settings.py"
    )
    for test in ("tests/bot/test_media.py", "tests/bot/fake_wb_cdn.py"):
        assert f"{PACKAGE}.services" not in read(bot, test), test
    # What the bot's CI checks first: the rewritten imports sit where ruff's isort wants them.
    lint = run([PYTHON, "-m", "ruff", "check", "--no-cache", "."], bot, timeout=120)
    assert_ok(lint, "ruff check of the updated bot")


def test_a_client_the_owner_changed_is_kept_with_its_imports(
    template: Template,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    bot = render_old_bot(template, last_release(), MEDIA_BOT, tmp_path / "bot")
    client = bot / OLD_CLIENT
    edited = read(bot, OLD_CLIENT).replace("PROBE_AHEAD = 8", "PROBE_AHEAD = 12  # ours")
    assert edited != read(bot, OLD_CLIENT)
    client.write_text(edited, encoding="utf-8")
    commit_all(bot, "the owner's tuning of the client")

    out = update(bot, template)

    # Kept byte for byte but for its import of the table, which went (it was as generated).
    assert not (bot / OLD_TABLE).exists()
    assert read(bot, OLD_CLIENT) == edited.replace(
        "from . import wb_routes\n",
        "from ecosystem_shared.wildberries import route_table as wb_routes\n",
    )
    assert f"kept {OLD_CLIENT}" in out and f"then delete {OLD_CLIENT}" in out
    # The bot still uses its own client until the owner carries the change over.
    assert "from ..services.media import (" in read(bot, f"{PACKAGE}/handlers/media.py")
