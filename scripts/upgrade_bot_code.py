"""Bring a bot's own code made by template 0.1.0 up to what 0.2.0 expects (a `_migrations` step).

Bot-owned files (`<package>/`, `tests/bot/`) are never touched by `copier update`, so what a
release changes in the code it generates reaches existing bots only through this script. It edits
a file only when the file is still exactly what the old release rendered for this bot's answers
(it renders that release into a temporary directory to compare); a file the author changed is
left as it is, and the step to do by hand is printed instead. The edits (CHANGELOG.md, 0.2.0,
"Upgrade notes"):

* handler modules: the module-level ``router = Router(...)`` with ``@router.<event>(...)``
  decorators becomes a ``router()`` factory registering the same handlers in the same order
  (aiogram attaches a router to one dispatcher only; 0.2.0 builds one per dispatcher), and
  ``build_router()`` calls the factories (``start.router()``);
* imports of ``ecosystem_shared`` form their own group before the bot's package (the ruff isort
  sections of 0.2.0's pyproject.toml);
* the fixes 0.2.0 made to the generated code that its template-owned tests and the bots' CI check
  (PATCHES below): CRM bots store users through ``UserRow`` + ``upsert_users`` and refuse ids no
  BIGINT holds; the greeting and /echo make any user input a message Telegram accepts; the
  external API bot's shutdown hook finds its client; media directories stay private (bandit);
  ``tests/bot/test_conversations.py`` is mypy-clean.

Run from the bot's root, as Copier runs migrations (copier.yml):
``python upgrade_bot_code.py --template <src> --from <old tag> --answers .copier-answers.yml``.
``--check`` prints what would change without writing. Standard library and copier only: it runs
with the Python that runs Copier.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LINE_LENGTH = 100  # the bots' ruff line-length
SHARED = "ecosystem_shared"
FACTORY_DOC = '"""A fresh router per call (one per dispatcher)."""'


# ---------------------------------------------------------------- module-level routers
@dataclass(frozen=True)
class Registration:
    observer: str  # message, callback_query, startup, ...
    callback: str
    arguments: tuple[str, ...]  # filters and keywords, as written in the decorator


def _call_lines(head: str, arguments: list[str], indent: str) -> list[str]:
    """``head(arguments)`` laid out as ruff format does at LINE_LENGTH."""
    one_line = f"{indent}{head}({', '.join(arguments)})"
    if len(one_line) <= LINE_LENGTH:
        return [one_line]
    inner = indent + "    "
    joined = f"{inner}{', '.join(arguments)}"
    if len(joined) <= LINE_LENGTH:
        return [f"{indent}{head}(", joined, f"{indent})"]
    return [f"{indent}{head}(", *(f"{inner}{argument}," for argument in arguments), f"{indent})"]


def _router_decorator(decorator: ast.expr) -> str | None:
    """The observer of ``@router.<observer>(...)``, else None."""
    if (
        isinstance(decorator, ast.Call)
        and isinstance(decorator.func, ast.Attribute)
        and isinstance(decorator.func.value, ast.Name)
        and decorator.func.value.id == "router"
    ):
        return decorator.func.attr
    return None


def router_factory(source: str) -> str | None:
    """``source`` with its module-level ``router = Router(...)`` turned into a ``router()``
    factory; None when the module has no such router or uses it in a way this does not know."""
    tree = ast.parse(source)
    assignment = next(
        (
            node
            for node in tree.body
            if isinstance(node, ast.Assign)
            and [getattr(target, "id", None) for target in node.targets] == ["router"]
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", None) == "Router"
        ),
        None,
    )
    if assignment is None:
        return None
    registrations: list[Registration] = []
    decorator_lines: set[int] = set()
    known_uses = 1  # the assignment
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        # Decorators apply bottom-up: the lowest one registers first.
        for decorator in reversed(node.decorator_list):
            observer = _router_decorator(decorator)
            if observer is None:
                continue
            assert isinstance(decorator, ast.Call)
            arguments = [ast.get_source_segment(source, arg) or "" for arg in decorator.args]
            arguments += [
                f"{keyword.arg}={ast.get_source_segment(source, keyword.value)}"
                for keyword in decorator.keywords
            ]
            registrations.append(Registration(observer, node.name, tuple(arguments)))
            decorator_lines.update(range(decorator.lineno, (decorator.end_lineno or 0) + 1))
            known_uses += 1
    uses = sum(isinstance(node, ast.Name) and node.id == "router" for node in ast.walk(tree))
    if uses != known_uses or not registrations:
        return None  # `router` used elsewhere (middlewares, sub-routers...): by hand
    name_argument = ast.get_source_segment(source, assignment.value) or "Router()"
    factory = [
        "def router() -> Router:",
        f"    {FACTORY_DOC}",
        f"    routes = {name_argument}",
    ]
    for item in registrations:
        head = f"routes.{item.observer}.register"
        factory += _call_lines(head, [item.callback, *item.arguments], "    ")
    factory.append("    return routes")

    lines = source.splitlines()
    start, end = assignment.lineno - 1, (assignment.end_lineno or assignment.lineno)
    before = [line for number, line in enumerate(lines[:start], 1) if number not in decorator_lines]
    after = [
        line for number, line in enumerate(lines[end:], end + 1) if number not in decorator_lines
    ]
    while before and not before[-1].strip():
        before.pop()
    while after and not after[0].strip():
        after.pop(0)
    return "\n".join([*before, "", "", *factory, "", "", *after]) + "\n"


def call_router_factories(source: str, factories: set[str] | None = None) -> str | None:
    """``handlers/__init__.py``: ``build_router()`` includes ``module.router()``, not
    ``module.router``, for the sibling modules in ``factories`` (all when None: the modules that
    have a ``router()`` factory); None when there is nothing to change."""
    tree = ast.parse(source)
    modules = {
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None
        for alias in node.names
        if factories is None or alias.name in factories
    }
    spots = sorted(
        {
            (node.end_lineno or 0, node.end_col_offset or 0)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and getattr(node.func, "attr", None) in ("include_routers", "include_router")
            for node in node.args
            if isinstance(node, ast.Attribute)
            and node.attr == "router"
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
        },
        reverse=True,
    )
    if not spots:
        return None
    lines = source.splitlines(keepends=True)
    for line, column in spots:  # from the end: earlier positions stay valid
        text = lines[line - 1]
        lines[line - 1] = text[:column] + "()" + text[column:]
    return "".join(lines)


# ---------------------------------------------------------------------------- imports
def _root(node: ast.stmt) -> str | None:
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return node.module.split(".")[0]
    if isinstance(node, ast.Import):
        return node.names[0].name.split(".")[0]
    return None


def ecosystem_import_group(source: str, package: str) -> str | None:
    """Imports of ``ecosystem_shared`` as a group of their own, before the bot's package (ruff's
    isort sections since 0.2.0); None when nothing changes."""
    tree = ast.parse(source)
    lines = source.splitlines()
    runs: list[list[ast.stmt]] = []
    for node in tree.body:
        if _root(node) not in (SHARED, package):
            continue
        if runs and node.lineno == (runs[-1][-1].end_lineno or 0) + 1:
            runs[-1].append(node)
        else:
            runs.append([node])
    changed = False
    for run in reversed(runs):
        roots = [_root(node) for node in run]
        if SHARED not in roots or package not in roots:
            continue
        segments = {id(node): lines[node.lineno - 1 : node.end_lineno] for node in run}
        shared = [line for node in run if _root(node) == SHARED for line in segments[id(node)]]
        own = [line for node in run if _root(node) == package for line in segments[id(node)]]
        lines[run[0].lineno - 1 : run[-1].end_lineno] = [*shared, "", *own]
        changed = True
    return "\n".join(lines) + "\n" if changed else None


# ---------------------------------------------------------------------------- patches
@dataclass(frozen=True)
class Patch:
    """Replace ``old`` by ``new`` in the bot-owned file ``path`` (``{package}`` filled in)."""

    path: str
    old: str
    new: str
    why: str


PATCHES = (
    Patch(
        "{package}/handlers/start.py",
        "from ecosystem_shared.notifications import Notifier\n",
        "from ecosystem_shared.notifications import Notifier\n"
        "from ecosystem_shared.sanitize import display_name\n",
        "the greeting shows the user's name through ecosystem_shared.sanitize.display_name "
        "(a 64-character name of control characters made a message Telegram refuses)",
    ),
    Patch(
        "{package}/handlers/start.py",
        "texts.greeting.format(name=user.first_name)",
        "texts.greeting.format(name=display_name(user.first_name))",
        "",
    ),
    Patch(
        "{package}/handlers/commands.py",
        "from ecosystem_shared.analytics import Analytics\n",
        "from ecosystem_shared.analytics import Analytics\n"
        "from ecosystem_shared.notifications import MESSAGE_LIMIT\n"
        "from ecosystem_shared.sanitize import clean_text\n",
        "/echo answers with ecosystem_shared.sanitize.clean_text(args, MESSAGE_LIMIT) (any text "
        "the user sent, as a message Telegram accepts)",
    ),
    Patch(
        "{package}/handlers/commands.py",
        '        await message.answer(command.args or "…")\n',
        "        # Whatever the user sent, as a message Telegram takes: valid UTF-8, not too"
        " long.\n"
        '        echo = clean_text(command.args or "", MESSAGE_LIMIT)\n'
        '        await message.answer(echo if echo.strip() else "…")\n',
        "",
    ),
    Patch(
        "{package}/services/media.py",
        "        # A Local Bot API server reads these files as another user.\n"
        "        os.chmod(directory, 0o755)\n",
        "        # Private (mkdtemp's 0o700): the Local Bot API server runs as the bot's uid.\n",
        "media files stay private: no `os.chmod(directory, 0o755)` (bandit B103, in the bot's CI; "
        "the Local Bot API server shares the bot's uid), and `import os` goes if unused",
    ),
    Patch("{package}/services/media.py", "\nimport os\n", "\n", ""),
    Patch(
        "tests/bot/test_media.py",
        "        # Readable by a Local Bot API server running as another user.\n",
        "        # Private: the Local Bot API server runs as the bot's uid.\n",
        "the media test expects the private 0o700 of the media directory",
    ),
    Patch(
        "tests/bot/test_media.py",
        "assert stat.S_IMODE(bundle.directory.stat().st_mode) == 0o755\n",
        "assert stat.S_IMODE(bundle.directory.stat().st_mode) == 0o700\n",
        "",
    ),
    # CRM: users stored the way analytics stores them (sanitised, capped), ids no BIGINT holds
    # refused before the database (tests/shared/test_hostile_updates.py sends both).
    Patch(
        "{package}/services/crm.py",
        "from datetime import datetime\n",
        "from datetime import UTC, datetime\n",
        "users are stored with ecosystem_shared.analytics_store.UserRow + upsert_users (sanitised "
        "and capped, as analytics stores them) instead of the module's own INSERT",
    ),
    Patch(
        "{package}/services/crm.py",
        "\nfrom ecosystem_shared.db import Database\n",
        "\nfrom ecosystem_shared.analytics_store import UserRow, upsert_users\n"
        "from ecosystem_shared.db import Database\n",
        "",
    ),
    Patch(
        "{package}/services/crm.py",
        '_ENSURE_USER = """\n'
        "INSERT INTO shared.users (telegram_id, username, first_name, last_name, language_code)\n"
        "VALUES ($1, $2, $3, $4, $5)\n"
        "ON CONFLICT (telegram_id) DO NOTHING\n"
        '"""\n',
        "TIMEOUT = 10.0  # seconds per statement\n",
        "",
    ),
    Patch(
        "{package}/services/crm.py",
        "        async with self.db.acquire() as conn, conn.transaction():\n"
        "            await conn.execute(\n"
        "                _ENSURE_USER,\n"
        "                user.id,\n"
        "                user.username,\n"
        "                user.first_name,\n"
        "                user.last_name,\n"
        "                user.language_code,\n"
        "            )\n",
        "        row = UserRow(\n"
        "            user.id,\n"
        "            user.username,\n"
        "            user.first_name,\n"
        "            user.last_name,\n"
        "            user.language_code,\n"
        "            datetime.now(UTC),\n"
        "        )\n"
        "        async with self.db.acquire() as conn, conn.transaction():\n"
        "            await upsert_users(conn, [row], TIMEOUT)\n",
        "",
    ),
    Patch(
        "{package}/handlers/crm.py",
        "from ecosystem_shared.notifications import format_digest\n",
        "from ecosystem_shared.notifications import format_digest\n"
        "from ecosystem_shared.sanitize import clean_id\n",
        "/subscribe, /orders and /grant take only user ids a BIGINT holds "
        "(ecosystem_shared.sanitize.clean_id); others are no Telegram user's",
    ),
    Patch(
        "{package}/handlers/crm.py",
        "    user = message.from_user\n    if user is None:\n        return\n",
        "    user = message.from_user\n    if user is None or clean_id(user.id) is None:\n"
        "        return\n",
        "",
    ),
    Patch(
        "{package}/handlers/crm.py",
        "    if message.from_user is None:\n        return\n",
        "    if message.from_user is None or clean_id(message.from_user.id) is None:\n"
        "        return\n",
        "",
    ),
    Patch(
        "{package}/handlers/crm.py",
        '    if not args.lstrip("-").isdigit():\n',
        '    if not args.lstrip("-").isdigit() or clean_id(int(args)) is None:\n',
        "",
    ),
    Patch(
        "{package}/handlers/external.py",
        "async def close_client(external_api: ExternalApiClient) -> None:\n"
        "    await external_api.close()\n",
        "async def close_client(dispatcher: Dispatcher) -> None:\n"
        "    # Looked up on the dispatcher: shutdown hooks get the workflow data as it was before"
        " startup.\n"
        '    client = dispatcher.workflow_data.get("external_api")\n'
        "    if isinstance(client, ExternalApiClient):\n"
        "        await client.close()\n",
        "the shutdown hook reads the API client from the dispatcher (aiogram passes shutdown "
        "hooks the data as it was before startup: `external_api` is not among it)",
    ),
    Patch(
        "tests/bot/test_conversations.py",
        '    return fake_api.calls("sendMessage", chat_id=CHANNEL)\n',
        '    calls: list[Any] = fake_api.calls("sendMessage", chat_id=CHANNEL)\n    return calls\n',
        "mypy checks tests/ too: channel_messages() must not return Any",
    ),
)


def apply_patches(path: str, source: str, package: str) -> tuple[str, list[str]]:
    """``source`` with every patch of ``path`` applied whose ``old`` text is there."""
    whys: list[str] = []
    for patch in PATCHES:
        if patch.path.format(package=package) != path or patch.old not in source:
            continue
        if patch.old == "\nimport os\n" and re.search(r"\bos\.", source):
            continue  # still used
        source = source.replace(patch.old, patch.new, 1)
        if patch.why:
            whys.append(patch.why)
    return source, whys


# ------------------------------------------------------------------------------- plan
@dataclass(frozen=True)
class Step:
    path: str
    new: str
    why: tuple[str, ...]


def plan(path: str, source: str, package: str, factories: set[str] | None = None) -> Step | None:
    """What this release changes in one bot-owned ``*.py`` file; None when nothing applies.
    ``factories``: the handler modules that have (or get) a ``router()`` factory."""
    why: list[str] = []
    try:
        edits: list[tuple[Callable[[str], str | None], str]] = [
            (
                router_factory,
                "the module-level `router = Router(...)` becomes a `def router() -> Router` "
                "factory that registers the same handlers (aiogram attaches a router to one "
                "dispatcher only), and handlers/__init__.py's build_router() includes "
                "`<module>.router()`",
            ),
            (
                lambda text: call_router_factories(text, factories),
                "build_router() includes `module.router()` (each call builds fresh routers)",
            ),
            (
                lambda text: ecosystem_import_group(text, package),
                "`ecosystem_shared` imports form their own group before the bot's package "
                "(ruff: I001; `ruff check --fix` does it)",
            ),
        ]
        new = source
        for edit, reason in edits:
            changed = edit(new)
            if changed is not None and changed != new:
                new = changed
                why.append(reason)
    except SyntaxError:
        return None
    new, patched = apply_patches(path, new, package)
    why += patched
    return Step(path, new, tuple(why)) if new != source else None


def bot_files(root: Path, package: str) -> Iterator[str]:
    for folder in (root / package, root / "tests" / "bot"):
        for path in sorted(folder.rglob("*.py")):
            if "__pycache__" not in path.parts:
                yield path.relative_to(root).as_posix()


# ------------------------------------------------------------------------ old render
def old_render(template: str, ref: str, answers: dict[str, Any], dst: Path) -> Path | None:
    """This bot as release ``ref`` of the template rendered it; None when that fails."""
    try:
        from copier import run_copy

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run_copy(
                template,
                dst,
                data=answers,
                defaults=True,
                unsafe=True,
                vcs_ref=ref,
                quiet=True,
            )
    except Exception as error:  # noqa: BLE001 - any failure means: compare with nothing
        print(f"could not render {ref} of the template to compare ({error})", file=sys.stderr)
        return None
    return dst


def release_refs(template: str, ref: str, until: str | None = None) -> list[str]:
    """``ref`` and the release tags of ``template`` after it and before ``until``: every release
    whose rendering a bot updated from ``ref`` may still hold (earlier migrations bring files
    of older bots to what a later release rendered)."""
    import subprocess

    from packaging.version import InvalidVersion, Version  # copier's own dependency

    def version(tag: str) -> Version | None:
        try:
            return Version(tag)
        except InvalidVersion:
            return None

    low, high = version(ref), version(until) if until else None
    listed = subprocess.run(
        ["git", "-C", template, "tag", "--list"], capture_output=True, text=True, check=False
    )
    later = [
        (found, tag)
        for tag in listed.stdout.split()
        if (found := version(tag)) is not None
        and low is not None
        and found > low
        and (high is None or found < high)
    ]
    return [ref, *(tag for _, tag in sorted(later))]


def load_answers(path: Path) -> dict[str, Any]:
    import yaml  # copier's own dependency

    loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {key: value for key, value in loaded.items() if not key.startswith("_")}


def has_factory(path: Path) -> bool:
    return "\ndef router() -> Router:" in path.read_text(encoding="utf-8")


def upgrade(root: Path, template: str, ref: str, answers: dict[str, Any], *, check: bool) -> int:
    """Edit the files still as ``ref`` rendered them, print the rest; the number left."""
    package = str(answers["package_name"])
    handlers_init = f"{package}/handlers/__init__.py"
    paths = [path for path in bot_files(root, package) if path != handlers_init]
    read = {path: (root / path).read_text(encoding="utf-8") for path in paths}
    steps = [step for path in paths if (step := plan(path, read[path], package)) is not None]
    init_step = (
        plan(handlers_init, (root / handlers_init).read_text(encoding="utf-8"), package)
        if (root / handlers_init).is_file()
        else None
    )
    if not steps and init_step is None:
        print(f"upgrade_bot_code: nothing to change in {package}/ and tests/bot/")
        return 0
    left = 0
    with tempfile.TemporaryDirectory(prefix="old-render-") as scratch:
        old = old_render(template, ref, answers, Path(scratch) / "bot")

        def as_generated(path: str) -> bool:
            rendered = old / path if old else None
            current = (root / path).read_bytes()
            return rendered is not None and rendered.is_file() and rendered.read_bytes() == current

        def apply(step: Step) -> bool:
            reasons = "".join(f"\n    - {why}" for why in step.why)
            if not as_generated(step.path):
                print(
                    f"left {step.path} as it is (changed since {ref} generated it); "
                    f"do by hand (CHANGELOG.md, upgrade notes):{reasons}"
                )
                return False
            if check:
                print(f"would update {step.path}:{reasons}")
            else:
                (root / step.path).write_text(step.new, encoding="utf-8")
                print(f"updated {step.path} (as {ref} generated it):{reasons}")
            return True

        converted = {step.path for step in steps if apply(step)}
        left += len(steps) - len(converted)
        if init_step is not None:
            # build_router() calls only the factories that exist now: a handler module the
            # author edited keeps its module-level router, included as before.
            handlers = root / package / "handlers"
            factories = {
                path.stem
                for path in handlers.glob("*.py")
                if has_factory(path) or f"{package}/handlers/{path.name}" in converted
            }
            text = (root / handlers_init).read_text(encoding="utf-8")
            init_step = plan(handlers_init, text, package, factories)
            if init_step is not None and not apply(init_step):
                left += 1
    return left


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", required=True, help="the template (Copier's src_path)")
    parser.add_argument("--from", dest="ref", required=True, help="the release updated from")
    parser.add_argument("--answers", type=Path, default=Path(".copier-answers.yml"))
    parser.add_argument("--check", action="store_true", help="print, change nothing")
    args = parser.parse_args(argv)
    answers = load_answers(args.answers)
    left = upgrade(Path.cwd(), args.template, args.ref, answers, check=args.check)
    if left:
        print(f"upgrade_bot_code: {left} file(s) to change by hand (listed above)")
    return 0  # never fail the update: the files left are listed


if __name__ == "__main__":
    raise SystemExit(main())
