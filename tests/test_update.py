"""`copier update` keeps shared components current without touching the bot's own code.

Every test builds a throwaway git copy of this template (the working tree, uncommitted files
included), tags releases in it, copies a bot from a tag and updates it like a user would.
Only rendering and git are exercised: the bots' Python is never run here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from copier import run_update

from devkit.render import copy_template

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "picture_bot"
BOT_ANSWERS = {"project_type": "bot", "bot_name": "Picture Bot", "mode": "media"}
# Parts of the template repository a bot never needs; skipping them keeps the copies fast.
SNAPSHOT_SKIP = ("examples/", "benchmarks/")
CONFLICT_PREFIXES = (b"<<<<<<< ", b">>>>>>> ")


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return result.stdout


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commits in throwaway repositories must not depend on the machine's git config."""
    for key, value in {
        "GIT_AUTHOR_NAME": "Template Tests",
        "GIT_AUTHOR_EMAIL": "tests@example.invalid",
        "GIT_COMMITTER_NAME": "Template Tests",
        "GIT_COMMITTER_EMAIL": "tests@example.invalid",
        "GIT_CONFIG_NOSYSTEM": "1",
    }.items():
        monkeypatch.setenv(key, value)


def snapshot_template(dst: Path) -> Path:
    """Copy the template's working tree (tracked + untracked, minus ignored) into `dst`."""
    listed = git(REPO_ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for rel in sorted(set(filter(None, listed.split("\0")))):
        src = REPO_ROOT / rel
        if rel.startswith(SNAPSHOT_SKIP) or not src.is_file():
            continue  # deleted-but-tracked files are not part of the working tree
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    git(dst, "init", "-q", "-b", "main")
    return dst


def release(template: Path, tag: str) -> None:
    """Commit everything in the template copy and tag it (a PEP 440 release)."""
    git(template, "add", "-A")
    git(template, "commit", "-q", "--allow-empty", "-m", f"release {tag}")
    git(template, "tag", tag)


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)


def copy_bot(
    template: Path,
    dst: Path,
    vcs_ref: str | None = None,
    data: Mapping[str, object] = BOT_ANSWERS,
) -> Path:
    """`copier copy` of a bot (newest tag unless `vcs_ref`), committed in its own repo."""
    copy_template(dst, data, src=template, vcs_ref=vcs_ref)
    git(dst, "init", "-q", "-b", "main")
    commit_all(dst, "initial copy")
    return dst


def update_bot(bot: Path) -> None:
    """`copier update --defaults` without `--vcs-ref`: goes to the newest tag."""
    run_update(bot, defaults=True, overwrite=True, unsafe=True, quiet=True)


def answers(bot: Path) -> dict[str, object]:
    loaded = yaml.safe_load((bot / ".copier-answers.yml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def tree(root: Path) -> dict[str, bytes]:
    """Every file below `root` (outside .git) by relative posix path."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(root).parts
    }


def assert_clean_merge(bot: Path) -> None:
    """No `.rej` leftovers and no inline conflict markers anywhere in the bot."""
    files = tree(bot)
    assert not [name for name in files if name.endswith(".rej")]
    conflicted = [
        name
        for name, content in files.items()
        if any(line.startswith(CONFLICT_PREFIXES) for line in content.splitlines())
    ]
    assert not conflicted, f"conflict markers in {conflicted}"


def status(repo: Path) -> list[str]:
    return sorted(git(repo, "status", "--porcelain", "--untracked-files=all").splitlines())


def append(path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)


SHARED_FIX = "\n\ndef shared_fix_marker() -> str:\n    return 'shared fix from 1.1.0'\n"
README_FIX = "Template fix from 1.1.0: read docs/UPDATING.md.\n"


def change_shared_components(template: Path) -> None:
    """What a template maintainer's fix looks like: a shared module and a rendered file."""
    append(template / "template/ecosystem_shared/notifications.py", SHARED_FIX)
    readme = template / "template/README.md.jinja"
    readme.write_text(README_FIX + readme.read_text(encoding="utf-8"), encoding="utf-8")


def edit_bot_code(bot: Path) -> dict[str, bytes | None]:
    """User commits in the bot's own code; returns the expected content per touched file."""
    pkg = bot / PACKAGE
    append(pkg / "handlers/start.py", "\n# user: greet in the house style\n")
    append(pkg / "settings.py", "\n# user: a bot-specific setting lives here\n")
    (pkg / "handlers/user_feature.py").write_text("FEATURE = 'mine'\n", encoding="utf-8")
    # One bot-owned and one template-owned file deleted on purpose: neither may come back.
    deleted = [
        next(p for p in sorted(pkg.glob("handlers/*.py")) if p.stem not in {"__init__", "start"}),
        next(iter(sorted(bot.glob("tests/shared/test_*.py")))),
    ]
    for path in deleted:
        path.unlink()
    append(bot / "README.md", "\nUser note kept across updates.\n")
    commit_all(bot, "user edits")
    touched = [
        f"{PACKAGE}/handlers/start.py",
        f"{PACKAGE}/settings.py",
        f"{PACKAGE}/handlers/user_feature.py",
    ]
    expected: dict[str, bytes | None] = {name: (bot / name).read_bytes() for name in touched}
    expected.update(dict.fromkeys(path.relative_to(bot).as_posix() for path in deleted))
    return expected


@pytest.fixture
def template_v1(tmp_path: Path) -> Path:
    template = snapshot_template(tmp_path / "template")
    release(template, "1.0.0")
    return template


def test_update_brings_shared_fix_and_keeps_user_code(template_v1: Path, tmp_path: Path) -> None:
    bot = copy_bot(template_v1, tmp_path / "bot")
    assert answers(bot)["_commit"] == "1.0.0"
    user_files = edit_bot_code(bot)

    change_shared_components(template_v1)
    release(template_v1, "1.1.0")
    # Unreleased work after the tag must not reach bots: update takes the newest tag, not HEAD.
    append(template_v1 / "template/ecosystem_shared/notifications.py", "# unreleased\n")
    commit_all(template_v1, "work in progress")
    update_bot(bot)

    assert answers(bot)["_commit"] == "1.1.0"
    assert "# unreleased" not in (bot / "ecosystem_shared/notifications.py").read_text()
    assert_clean_merge(bot)
    assert SHARED_FIX in (bot / "ecosystem_shared/notifications.py").read_text(encoding="utf-8")
    readme = (bot / "README.md").read_text(encoding="utf-8")
    assert readme.startswith(README_FIX), "template change to README did not arrive"
    assert readme.endswith("\nUser note kept across updates.\n"), "user's README edit lost"
    for name, content in user_files.items():
        if content is None:
            assert not (bot / name).exists(), f"{name} was deleted by the user but came back"
        else:
            assert (bot / name).read_bytes() == content, f"user's {name} changed"
    # Exactly the shared files changed; the user reviews this diff and commits it.
    assert status(bot) == [
        " M .copier-answers.yml",
        " M README.md",
        " M ecosystem_shared/notifications.py",
    ]


def test_updated_bot_equals_fresh_copy_apart_from_user_edits(
    template_v1: Path, tmp_path: Path
) -> None:
    bot = copy_bot(template_v1, tmp_path / "bot")
    user_files = edit_bot_code(bot)
    change_shared_components(template_v1)
    release(template_v1, "1.1.0")
    update_bot(bot)

    fresh = copy_bot(template_v1, tmp_path / "fresh")
    updated_tree, fresh_tree = tree(bot), tree(fresh)
    differing = {
        name
        for name in updated_tree.keys() | fresh_tree.keys()
        if updated_tree.get(name) != fresh_tree.get(name)
    }
    assert differing == set(user_files) | {"README.md"}
    # The README differs only by the user's own line.
    assert updated_tree["README.md"] == fresh_tree["README.md"] + (
        b"\nUser note kept across updates.\n"
    )


def test_update_without_template_change_is_a_noop(template_v1: Path, tmp_path: Path) -> None:
    bot = copy_bot(template_v1, tmp_path / "bot")
    edit_bot_code(bot)
    update_bot(bot)
    assert status(bot) == []
    assert answers(bot)["_commit"] == "1.0.0"


def test_check_update_reports_a_new_release(template_v1: Path, tmp_path: Path) -> None:
    bot = copy_bot(template_v1, tmp_path / "bot")

    def check_update() -> int:
        command = [sys.executable, "-m", "copier", "check-update", "--quiet", str(bot)]
        return subprocess.run(command, capture_output=True, check=False).returncode

    assert check_update() == 0
    change_shared_components(template_v1)
    release(template_v1, "1.1.0")
    assert check_update() == 2  # documented: exit status 2 when a newer release exists
    update_bot(bot)
    commit_all(bot, "update to 1.1.0")
    assert check_update() == 0


def test_bot_owned_files_are_never_overwritten(template_v1: Path, tmp_path: Path) -> None:
    """A template change to a bot-owned file reaches new bots only, never existing ones."""
    bot = copy_bot(template_v1, tmp_path / "bot")
    edit_bot_code(bot)
    before = tree(bot)
    # 1.1.0 changes one bot-owned file the user edited and one the user did not.
    package_src = template_v1 / "template/{{package_name}}"
    append(package_src / "handlers/start.py", "# 1.1.0: new greeting\n")
    append(package_src / "texts.py.jinja", "# 1.1.0: new texts\n")
    release(template_v1, "1.1.0")
    update_bot(bot)
    after = tree(bot)
    for name in (f"{PACKAGE}/handlers/start.py", f"{PACKAGE}/texts.py"):
        assert after[name] == before[name], f"update changed bot-owned {name}"
    assert status(bot) == [" M .copier-answers.yml"]
    assert_clean_merge(bot)


# A line of a template-owned file that both the user and release 1.1.0 change.
CONFLICT_FILE = "ecosystem_shared/notifications.py"
CONFLICT_LINE = "MESSAGE_LIMIT = 4096"


def replace_line(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not one line of {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_conflict_and_its_documented_resolution(template_v1: Path, tmp_path: Path) -> None:
    """docs/UPDATING.md "Conflicts": both changed the same lines of a template-owned file; the
    update writes both versions inline, git shows the file unmerged; resolving, `git add` and
    committing finishes it, and `git reset --hard && git clean -fd` starts over."""
    bot = copy_bot(template_v1, tmp_path / "bot")
    replace_line(bot / CONFLICT_FILE, CONFLICT_LINE, "MESSAGE_LIMIT = 3000  # user: shorter")
    commit_all(bot, "user edits a template-owned line")
    committed = tree(bot)

    replace_line(template_v1 / "template" / CONFLICT_FILE, CONFLICT_LINE, "MESSAGE_LIMIT = 4000")
    change_shared_components(template_v1)  # a change elsewhere in the same file and in README
    release(template_v1, "1.1.0")
    update_bot(bot)

    text = (bot / CONFLICT_FILE).read_text(encoding="utf-8")
    mine, ours = "MESSAGE_LIMIT = 3000  # user: shorter", "MESSAGE_LIMIT = 4000"
    assert f"<<<<<<< before updating\n{mine}\n=======\n{ours}\n>>>>>>> after updating" in text
    assert SHARED_FIX in text, "the non-conflicting change to the same file arrived"
    assert f"UU {CONFLICT_FILE}" in status(bot)
    assert (bot / "README.md").read_text(encoding="utf-8").startswith(README_FIX)
    assert answers(bot)["_commit"] == "1.1.0"

    # Start over: the tree is what the user committed; the same update conflicts again.
    git(bot, "reset", "--hard")
    git(bot, "clean", "-fd")
    assert tree(bot) == committed and status(bot) == []
    update_bot(bot)
    assert f"UU {CONFLICT_FILE}" in status(bot)

    # Resolve: keep the user's value, drop the markers, git add, commit.
    lines = (bot / CONFLICT_FILE).read_text(encoding="utf-8").splitlines(keepends=True)
    start = lines.index("<<<<<<< before updating\n")
    end = lines.index(">>>>>>> after updating\n")
    lines[start : end + 1] = [mine + "\n"]
    (bot / CONFLICT_FILE).write_text("".join(lines), encoding="utf-8")
    git(bot, "add", CONFLICT_FILE)
    commit_all(bot, "update to 1.1.0")
    assert status(bot) == []
    assert_clean_merge(bot)
    resolved_text = (bot / CONFLICT_FILE).read_text(encoding="utf-8")
    assert mine in resolved_text and SHARED_FIX in resolved_text and ours not in resolved_text

    # The next release updates the resolved file cleanly and keeps the user's resolution.
    append(template_v1 / "template" / CONFLICT_FILE, "\n# 1.2.0: another shared fix\n")
    release(template_v1, "1.2.0")
    update_bot(bot)
    assert_clean_merge(bot)
    final = (bot / CONFLICT_FILE).read_text(encoding="utf-8")
    assert mine in final and final.endswith("# 1.2.0: another shared fix\n")
    assert status(bot) == [" M .copier-answers.yml", f" M {CONFLICT_FILE}"]


def test_new_question_gets_default_that_keeps_old_behaviour(
    template_v1: Path, tmp_path: Path
) -> None:
    bot = copy_bot(template_v1, tmp_path / "bot")
    before = tree(bot)
    # 1.1.0 adds an opt-in feature: a question whose default keeps what old bots do.
    append(
        template_v1 / "copier.yml",
        "\nstatus_page:\n"
        "  type: bool\n"
        "  when: \"{{ project_type == 'bot' }}\"\n"
        "  help: Serve a public status page\n"
        "  default: false\n",
    )
    readme = template_v1 / "template/README.md.jinja"
    append(readme, "{% if status_page %}\n## Status page\nEnabled.\n{% endif %}")
    release(template_v1, "1.1.0")
    update_bot(bot)

    recorded = answers(bot)
    assert recorded["status_page"] is False
    assert recorded["_commit"] == "1.1.0"
    after = tree(bot)
    assert after["README.md"] == before["README.md"]
    assert status(bot) == [" M .copier-answers.yml"]
    assert_clean_merge(bot)

    # Control: the question does change the output when answered, so the check above can fail.
    enabled = tmp_path / "enabled"
    copy_template(enabled, {**BOT_ANSWERS, "status_page": True}, src=template_v1, vcs_ref=None)
    assert b"## Status page" in (enabled / "README.md").read_bytes()


# ---------------------------------------------------------------------------- _migrations
OLD_HELPER = "template/{{package_name}}/services/http_retry.py"
NEW_HELPER = "template/ecosystem_shared/http_retry.py"
HELPER_USER = "template/{{package_name}}/services/uses_retry.py.jinja"
MIGRATION = """\
  - version: "2.0.0"
    command:
      - "{{ _copier_python }}"
      - "{{ _copier_conf.src_path }}/scripts/move_module.py"
      - "{{ package_name }}/services/http_retry.py"
      - "ecosystem_shared/http_retry.py"
"""


def add_migration(copier_yml: Path, entry: str) -> None:
    """Add one `_migrations` item, after the real ones if copier.yml declares any."""
    text = copier_yml.read_text(encoding="utf-8")
    assert "_migrations: []" not in text, "write an empty _migrations as a comment instead"
    if "\n_migrations:\n" in text:
        text = text.replace("\n_migrations:\n", f"\n_migrations:\n{entry}", 1)
    else:
        text += f"\n_migrations:\n{entry}"
    copier_yml.write_text(text, encoding="utf-8")


def build_move_releases(template: Path, *, with_migration: bool) -> None:
    """1.0.0 ships a helper inside the bot package; 2.0.0 moves it into ecosystem_shared."""
    helper = template / OLD_HELPER
    helper.write_text("def backoff(attempt: int) -> float:\n    return 2.0**attempt\n")
    (template / HELPER_USER).write_text(
        "from {{ package_name }}.services.http_retry import backoff\n\nDELAY = backoff(1)\n"
    )
    release(template, "1.0.0")
    (template / NEW_HELPER).write_bytes(helper.read_bytes())
    helper.unlink()
    (template / HELPER_USER).write_text(
        "from ecosystem_shared.http_retry import backoff\n\nDELAY = backoff(1)\n"
    )
    if with_migration:
        add_migration(template / "copier.yml", MIGRATION)
    release(template, "2.0.0")


@pytest.mark.parametrize("with_migration", [True, False], ids=["migration", "no-migration"])
def test_migration_moves_a_file_out_of_the_bot_package(
    tmp_path: Path, with_migration: bool
) -> None:
    template = snapshot_template(tmp_path / "template")
    build_move_releases(template, with_migration=with_migration)
    bot = copy_bot(template, tmp_path / "bot", vcs_ref="1.0.0")
    stale = bot / PACKAGE / "services/http_retry.py"
    assert stale.is_file()

    update_bot(bot)

    assert answers(bot)["_commit"] == "2.0.0"
    assert (bot / "ecosystem_shared/http_retry.py").is_file()
    uses = (bot / PACKAGE / "services/uses_retry.py").read_text(encoding="utf-8")
    if with_migration:
        assert not stale.exists(), "stale bot-owned copy survived the update"
        assert uses.startswith("from ecosystem_shared.http_retry import backoff\n")
    else:
        # Why the migration exists: bot-owned paths are excluded on update, so without it the
        # old copy stays and the bot's own code keeps importing it instead of the shared fix.
        assert stale.exists()
        assert uses.startswith(f"from {PACKAGE}.services.http_retry import backoff\n")
    assert_clean_merge(bot)


def test_move_module_script_handles_moves_and_imports(tmp_path: Path) -> None:
    bot = tmp_path / "bot"
    (bot / "pkg/services").mkdir(parents=True)
    (bot / "pkg/services/old_name.py").write_text("X = 1\n")
    (bot / "pkg/a.py").write_text(
        "from pkg.services.old_name import X\n"
        "from pkg.services import old_name\n"
        "import pkg.services.old_name_extra\n"
    )
    (bot / ".venv/lib").mkdir(parents=True)
    (bot / ".venv/lib/b.py").write_text("import pkg.services.old_name\n")
    script = REPO_ROOT / "scripts/move_module.py"
    subprocess.run(
        [sys.executable, script, "pkg/services/old_name.py", "pkg/core/new_name.py"],
        cwd=bot,
        check=True,
        env={**os.environ},
    )
    assert not (bot / "pkg/services/old_name.py").exists()
    assert (bot / "pkg/core/new_name.py").read_text() == "X = 1\n"
    assert (bot / "pkg/a.py").read_text() == (
        "from pkg.core.new_name import X\n"
        "from pkg.core import new_name as old_name\n"
        "import pkg.services.old_name_extra\n"
    )
    assert (bot / ".venv/lib/b.py").read_text() == "import pkg.services.old_name\n"


def run_move_module(bot: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = REPO_ROOT / "scripts/move_module.py"
    return subprocess.run(
        [sys.executable, script, *args], cwd=bot, check=True, capture_output=True, text=True
    )


def test_move_module_rewrites_relative_imports_into_the_right_group(tmp_path: Path) -> None:
    """`from ..services.media import (...)` becomes an ecosystem_shared import in that group
    (ruff's isort sections of the bots), `from . import wb_routes` keeps its local name."""
    bot = tmp_path / "bot"
    (bot / "pkg/services").mkdir(parents=True)
    (bot / "pkg/handlers").mkdir()
    (bot / "ecosystem_shared/wildberries").mkdir(parents=True)
    for path in ("pkg/services/media.py", "ecosystem_shared/wildberries/__init__.py"):
        (bot / path).write_text("X = 1\nY = 2\n")
    (bot / "pkg/services/wb_routes.py").write_text("ROWS = ()\n")
    (bot / "ecosystem_shared/wildberries/route_table.py").write_text("ROWS = ()\n")
    (bot / "pkg/handlers/media.py").write_text(
        "import re\n\n"
        "from ecosystem_shared.analytics import Analytics\n"
        "from ecosystem_shared.telegram import send\n\n"
        "from ..services.media import (\n    X,\n    Y,\n)\n"
        "from ..settings import Settings\n"
    )
    (bot / "pkg/services/kept.py").write_text("from . import wb_routes\n\nROWS = wb_routes.ROWS\n")
    (bot / "pkg/settings.py").write_text(
        "from pydantic import Field\n\nfrom .services.media import X\n\nLIMIT = Field(X)\n"
    )
    result = run_move_module(
        bot,
        "pkg/services/media.py",
        "ecosystem_shared/wildberries/__init__.py",
        "pkg/services/wb_routes.py",
        "ecosystem_shared/wildberries/route_table.py",
    )
    assert "removed pkg/services/media.py" in result.stderr
    assert not (bot / "pkg/services/media.py").exists()
    assert not (bot / "pkg/services/wb_routes.py").exists()
    assert (bot / "pkg/handlers/media.py").read_text() == (
        "import re\n\n"
        "from ecosystem_shared.analytics import Analytics\n"
        "from ecosystem_shared.telegram import send\n"
        "from ecosystem_shared.wildberries import (\n    X,\n    Y,\n)\n\n"
        "from ..settings import Settings\n"
    )
    assert (bot / "pkg/services/kept.py").read_text() == (
        "from ecosystem_shared.wildberries import route_table as wb_routes\n\n"
        "ROWS = wb_routes.ROWS\n"
    )
    assert (bot / "pkg/settings.py").read_text() == (
        "from pydantic import Field\n\n"
        "from ecosystem_shared.wildberries import X\n\n"
        "LIMIT = Field(X)\n"
    )


def test_move_module_keeps_a_file_the_author_changed(tmp_path: Path) -> None:
    """A stale bot-owned copy that is neither the new file nor what a release generated holds
    the author's changes: it stays, its imports stay, and the manual step is printed."""
    bot = tmp_path / "bot"
    (bot / "pkg/services").mkdir(parents=True)
    (bot / "ecosystem_shared").mkdir()
    (bot / "ecosystem_shared/client.py").write_text("X = 2\n")
    (bot / "pkg/services/client.py").write_text("X = 1  # the author's tuning\n")
    (bot / "pkg/use.py").write_text("from pkg.services.client import X\n")
    result = run_move_module(bot, "pkg/services/client.py", "ecosystem_shared/client.py")
    assert (bot / "pkg/services/client.py").read_text() == "X = 1  # the author's tuning\n"
    assert (bot / "pkg/use.py").read_text() == "from pkg.services.client import X\n"
    assert "kept pkg/services/client.py" in result.stderr
    assert "then delete pkg/services/client.py" in result.stderr

    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    import move_module

    # What a release generated there (the bot never changed it): removed.
    generated = [b"X = 1  # the author's tuning\n"]
    gone, notes = move_module.move_file(
        bot, Path("pkg/services/client.py"), Path("ecosystem_shared/client.py"), generated
    )
    assert gone and not (bot / "pkg/services/client.py").exists(), notes
