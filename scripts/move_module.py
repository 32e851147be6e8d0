"""Move or rename a module of a generated bot during `copier update` (a `_migrations` helper).

Copier already deletes a *template-owned* file that a new template version no longer renders.
It cannot help in two cases, which is what this script is for:

* the old path is *bot-owned* (excluded on update, see `_exclude` in copier.yml): the old file
  would stay behind as a stale copy. When the template now ships the new path, the old file is
  removed only if it is what the template generated (identical to the new file, or, with
  ``--template`` and ``--from``, to what a release since the bot's one rendered there); a file
  the author changed is kept and the manual step printed. When the new path is bot-owned too,
  the file is moved there with the user's edits;
* the bot's own code still imports the old module: ``old.dotted.path`` (absolute, relative such
  as ``from ..services.old import x``, or ``from parent import old``) is rewritten to the new one
  in every `*.py` file of the bot, because bot-owned code is never re-rendered by an update. An
  import that now names another top-level package (the bot's package -> ``ecosystem_shared``)
  joins that package's import group, as ruff's isort wants it. Imports of a kept file stay.

Several ``OLD NEW`` pairs may be given. Run from the bot's root (Copier runs migrations there),
e.g. in copier.yml:

    _migrations:
      - version: "2.0.0"
        command:
          - "{{ _copier_python }}"
          - "{{ _copier_conf.src_path }}/scripts/move_module.py"
          - "{{ package_name }}/services/http_retry.py"
          - "ecosystem_shared/http_retry.py"
          - "--template"
          - "{{ _copier_conf.src_path }}"
          - "--from"
          - "{{ _version_from }}"

Only stdlib (and copier, for ``--template``): it runs with the Python that runs Copier, not in
the bot's environment.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import re
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

SKIP_DIRS = frozenset({".git", ".venv", "venv", "__pycache__", ".mypy_cache", ".ruff_cache"})


def module_name(path: Path) -> str | None:
    """Dotted module name of a bot-relative `*.py` path (`a/b/__init__.py` -> `a.b`)."""
    if path.suffix != ".py":
        return None
    parts = list(path.with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) or None


def move_file(
    root: Path, old: Path, new: Path, generated: Sequence[bytes] = ()
) -> tuple[bool, list[str]]:
    """Remove or move ``old`` so only ``new`` remains: whether ``old`` is gone, and notes.

    When the template shipped ``new``, ``old`` is removed only if it is identical to ``new`` or
    to one of ``generated`` (what releases rendered at ``old``): never a file the author changed.
    """
    notes: list[str] = []
    old_abs, new_abs = root / old, root / new
    if not old_abs.exists():
        return False, notes
    if new_abs.exists():
        content = old_abs.read_bytes()
        if content != new_abs.read_bytes() and content not in generated:
            notes.append(
                f"kept {old}: it differs from what the template generated, so it may hold your "
                f"changes. Move them to your own code or drop them, switch the imports of "
                f"{module_name(old) or old} to {module_name(new) or new} "
                f"(`python move_module.py {old} {new}` from the template does both), then "
                f"delete {old}"
            )
            return False, notes
        old_abs.unlink()
        notes.append(f"removed {old} (as the template generated it; now {new})")
    else:
        new_abs.parent.mkdir(parents=True, exist_ok=True)
        old_abs.rename(new_abs)
        notes.append(f"moved {old} -> {new}")
    # Drop directories the move left empty, up to (not including) the bot root.
    parent = old_abs.parent
    while parent != root and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent
    return True, notes


def python_files(root: Path) -> list[Path]:
    """All `*.py` files of the bot, without VCS/virtualenv/cache directories."""
    return sorted(
        path
        for path in root.rglob("*.py")
        if not SKIP_DIRS.intersection(path.relative_to(root).parts[:-1])
    )


_RELATIVE = re.compile(r"^([ \t]*)from (\.+)([\w.]*) import[ \t]+(.*)$", re.MULTILINE)
_ALIAS = re.compile(r"(\w+)(?:[ \t]+as[ \t]+(\w+))?[ \t]*")


def absolute_module(path: Path, dots: int, rest: str) -> str | None:
    """What ``from <dots><rest> import`` in the bot-relative ``path`` names, or None if it
    climbs above the bot root."""
    parts = list(path.with_suffix("").parts)
    package = parts[:-1]  # a module's package; for `__init__.py` the package itself
    if dots - 1 > len(package):
        return None
    base = package[: len(package) - (dots - 1)]
    return ".".join([*base, *([rest] if rest else [])]) or None


def _root(node: ast.stmt) -> str | None:
    if isinstance(node, ast.ImportFrom):
        return "." if node.level else (node.module or "").split(".")[0]
    if isinstance(node, ast.Import):
        return node.names[0].name.split(".")[0]
    return None


def regroup(text: str, moved_lines: set[int], new_root: str, own_roots: set[str]) -> str:
    """Move the top-level imports on ``moved_lines`` (1-based) that now name ``new_root`` into
    that package's import group (sorted by module), or into a group of their own before the
    bot's own imports (``own_roots``, relative ones included)."""
    for _ in range(len(moved_lines)):
        lines = text.splitlines()
        body = [node for node in ast.parse(text).body if _root(node) is not None]
        moved = next(
            (
                node
                for node in body
                if _root(node) == new_root
                and moved_lines.intersection(range(node.lineno, (node.end_lineno or 0) + 1))
            ),
            None,
        )
        if moved is None:
            break
        start, end = moved.lineno - 1, moved.end_lineno or moved.lineno
        moved_lines.difference_update(range(moved.lineno, end + 1))
        peers = [node for node in body if node is not moved and _root(node) == new_root]
        own = [node for node in body if node is not moved and _root(node) in own_roots]
        if not peers and not own:
            continue  # alone in its group already
        block = lines[start:end]
        rest = lines[:start] + lines[end:]
        shift = end - start
        # An emptied group leaves two blank lines: one goes with it.
        if 0 < start < len(rest) and not rest[start - 1].strip() and not rest[start].strip():
            del rest[start]
            shift += 1
        module = getattr(moved, "module", "") or ""

        def line_of(node: ast.stmt, *, after: bool, start: int = start, shift: int = shift) -> int:
            """Index in ``rest`` before (or after) ``node``."""
            line = (node.end_lineno or node.lineno) if after else node.lineno - 1
            return line - shift if line > start else line

        if peers:
            later = [
                node
                for node in peers
                if isinstance(node, ast.ImportFrom) and (node.module or "") > module
            ]
            at = line_of(later[0], after=False) if later else line_of(peers[-1], after=True)
            rest[at:at] = block
        else:
            at = line_of(own[0], after=False)
            rest[at:at] = [*block, ""]
        text = "\n".join(rest) + "\n"
    return text


def rewrite_imports(root: Path, old_module: str, new_module: str) -> list[str]:
    """Replace the dotted module path `old_module` with `new_module` in every Python file."""
    notes: list[str] = []
    old_parent, _, old_leaf = old_module.rpartition(".")
    new_parent, _, new_leaf = new_module.rpartition(".")
    dotted = re.compile(rf"(?<![\w.]){re.escape(old_module)}(?![\w])")
    # `from parent import leaf` needs its own rule: the dotted path never appears in it.
    from_parent = (
        re.compile(
            rf"^([ \t]*)from {re.escape(old_parent)} import {re.escape(old_leaf)}"
            r"([ \t]+as[ \t]+\w+)?[ \t]*$",
            re.MULTILINE,
        )
        if old_parent
        else None
    )
    old_root, new_root = old_module.split(".")[0], new_module.split(".")[0]

    def leaf_import(indent: str, alias: str | None) -> str:
        # Keep the local name the code uses when only the leaf was renamed.
        keep = alias or ("" if new_leaf == old_leaf else old_leaf)
        return f"{indent}from {new_parent} import {new_leaf}" + (f" as {keep}" if keep else "")

    for path in python_files(root):
        text = path.read_text(encoding="utf-8")
        relative = path.relative_to(root)
        moved_lines: set[int] = set()

        def relative_import(match: re.Match[str], relative: Path = relative) -> str:
            indent, dots, rest, names = match[1], match[2], match[3], match[4]
            target = absolute_module(relative, len(dots), rest)
            if target == old_module:
                return f"{indent}from {new_module} import {names}"
            alias = _ALIAS.fullmatch(names)
            if target == old_parent and new_parent and alias and alias[1] == old_leaf:
                return leaf_import(indent, alias[2])
            return match[0]

        updated = []
        for number, line in enumerate(text.splitlines(keepends=True), start=1):
            new_line = _RELATIVE.sub(relative_import, dotted.sub(new_module, line))
            if from_parent is not None and new_parent:
                new_line = from_parent.sub(
                    lambda m: leaf_import(m[1], (m[2] or "").split()[-1] if m[2] else None),
                    new_line,
                )
            # An import that now names another top-level package (or an absolute one where
            # it was relative) belongs to another import group.
            if new_line != line and (old_root != new_root or _RELATIVE.match(line)):
                moved_lines.add(number)
            updated.append(new_line)
        result = "".join(updated)
        if result == text:
            continue
        if moved_lines:
            # Not Python we can parse: the rewrite alone, as before.
            with contextlib.suppress(SyntaxError):
                result = regroup(result, moved_lines, new_root, {".", old_root} - {new_root})
        path.write_text(result, encoding="utf-8")
        notes.append(f"rewrote imports in {relative}")
    return notes


def generated_copies(
    template: str, ref: str, until: str | None, paths: Sequence[Path], answers: Path
) -> list[bytes]:
    """What release ``ref`` and each later release tag before ``until`` of ``template``
    rendered at ``paths`` for this bot's answers (empty when they cannot be rendered)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from upgrade_bot_code import load_answers, old_render, release_refs

    copies: list[bytes] = []
    data = load_answers(answers)
    for release in release_refs(template, ref, until):
        with tempfile.TemporaryDirectory(prefix="old-render-") as scratch:
            rendered = old_render(template, release, data, Path(scratch) / "bot")
            if rendered is None:
                continue
            copies += [
                (rendered / path).read_bytes() for path in paths if (rendered / path).is_file()
            ]
    return copies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="OLD NEW",
        help="old and new path, relative to the bot root; several pairs allowed",
    )
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="bot root (default: cwd)")
    parser.add_argument(
        "--no-imports", action="store_true", help="do not rewrite imports of the old module"
    )
    parser.add_argument("--template", help="the template (Copier's src_path), to compare with")
    parser.add_argument("--from", dest="ref", help="the release the bot is updated from")
    parser.add_argument("--to", dest="until", help="the release updated to (its tag excluded)")
    parser.add_argument("--answers", type=Path, default=Path(".copier-answers.yml"))
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    paths: list[Path] = args.paths
    if len(paths) % 2:
        parser.error("paths come in OLD NEW pairs")
    if any(path.is_absolute() or ".." in path.parts for path in paths):
        parser.error("paths must be relative to the bot root")
    if bool(args.template) != bool(args.ref):
        parser.error("--template and --from go together")
    pairs = list(zip(paths[::2], paths[1::2], strict=True))
    generated = (
        generated_copies(
            args.template, args.ref, args.until, [old for old, _ in pairs], root / args.answers
        )
        if args.template
        else []
    )
    notes: list[str] = []
    for old, new in pairs:
        gone, moved = move_file(root, old, new, generated)
        notes += moved
        old_module, new_module = module_name(old), module_name(new)
        if gone and not args.no_imports and old_module and new_module:
            notes += rewrite_imports(root, old_module, new_module)
    for note in notes:
        print(f"move_module: {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
