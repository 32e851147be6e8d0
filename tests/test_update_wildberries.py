"""A Wildberries fix released as a new tag reaches an existing media bot, its own edits kept.

The client lives in the template-owned ``ecosystem_shared/wildberries/`` (0.3.0 moved it out of
the bot's package), so a route fix is an ordinary template change: these tests release one in a
throwaway copy of the template and take a media bot made by the previous tag to it, once with
``copier update`` and once with the ecosystem's ``./update-bots``. The bot's owner has edited
its handler (bot-owned) before the update: the edit stays, the fix arrives.
"""

from __future__ import annotations

from pathlib import Path

from tests.test_fleet import add_bot, committed_version, ecosystem_at, update_bots
from tests.test_update import (  # _git_identity: autouse, commits need a fixed identity
    _git_identity,  # noqa: F401
    answers,
    assert_clean_merge,
    commit_all,
    copy_bot,
    release,
    snapshot_template,
    status,
    update_bot,
)

ROUTES = "ecosystem_shared/wildberries/routes.py"
OLD_URL = 'ROUTE_MAP_URL = "https://cdn.wbbasket.ru/api/v3/upstreams"'
# The fix of the next tag: the CDN moved its route map (a plausible change of its layout).
NEW_URL = 'ROUTE_MAP_URL = "https://cdn.wbbasket.ru/api/v4/upstreams"'
OWN_EDIT = "\n\n# The owner's note: answer faster on weekends.\nWEEKEND_HINT = True\n"
MEDIA_BOT = {"bot_name": "Picture Bot", "mode": "media"}


def release_route_fix(template: Path, tag: str) -> None:
    """Change the route module of the template copy and tag it."""
    routes = template / "template" / ROUTES
    text = routes.read_text(encoding="utf-8")
    assert OLD_URL in text, "the route module changed: update this test's fix"
    routes.write_text(text.replace(OLD_URL, NEW_URL), encoding="utf-8")
    release(template, tag)


def edit_handler(bot: Path) -> Path:
    """The owner's own edit of the bot-owned media handler, committed."""
    handler = bot / "picture_bot/handlers/media.py"
    handler.write_text(handler.read_text(encoding="utf-8") + OWN_EDIT, encoding="utf-8")
    commit_all(bot, "own edit of the media handler")
    return handler


def test_a_route_fix_reaches_a_media_bot_through_copier_update(tmp_path: Path) -> None:
    template = snapshot_template(tmp_path / "template")
    release(template, "1.0.0")
    bot = copy_bot(template, tmp_path / "bot", vcs_ref="1.0.0", data=MEDIA_BOT)
    assert OLD_URL in (bot / ROUTES).read_text(encoding="utf-8")
    handler = edit_handler(bot)
    own_handler = handler.read_text(encoding="utf-8")

    release_route_fix(template, "1.1.0")
    update_bot(bot)

    assert answers(bot)["_commit"] == "1.1.0"
    routes = (bot / ROUTES).read_text(encoding="utf-8")
    assert NEW_URL in routes and OLD_URL not in routes, "the route fix did not reach the bot"
    assert handler.read_text(encoding="utf-8") == own_handler, "the owner's edit was lost"
    # Only the fix and the recorded version changed: nothing else of the bot moved.
    assert sorted(status(bot)) == [" M .copier-answers.yml", f" M {ROUTES}"]
    assert_clean_merge(bot)


def test_a_route_fix_reaches_a_media_bot_through_update_bots(tmp_path: Path) -> None:
    template = snapshot_template(tmp_path / "template")
    release(template, "1.0.0")
    release_route_fix(template, "1.1.0")
    fleet = ecosystem_at(template, "1.1.0", ["picture-bot"])
    bot = add_bot(fleet, "picture-bot", "1.0.0", MEDIA_BOT)
    handler = edit_handler(bot)
    own_handler = handler.read_text(encoding="utf-8")

    code, rows, out = update_bots(fleet)

    assert code == 0, out
    assert rows["picture-bot"].result == "updated", out
    assert committed_version(bot) == "1.1.0"
    assert NEW_URL in (bot / ROUTES).read_text(encoding="utf-8")
    assert handler.read_text(encoding="utf-8") == own_handler
    assert status(bot) == []  # committed by update-bots
