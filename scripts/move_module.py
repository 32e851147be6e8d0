"""Move or rename a file inside a generated bot during `copier update` (a `_migrations` helper).

Copier already deletes a *template-owned* file that a new template version no longer renders.
It cannot help in two cases, which is what this script is for:

* the old path is *bot-owned* (excluded on update, see `_exclude` in copier.yml): the old file
  would stay behind as a stale copy, so it is removed when the template now ships the new path,
  or moved there (keeping the user's edits) when the new path is bot-owned too;
* the bot's own code still imports the old module: `old.dotted.path` is rewritten to the new one
  in every `*.py` file of the bot, because bot-owned code is never re-rendered by an update.

Run from the bot's root (Copier runs migrations there), e.g. in copier.yml:

    _migrations:
      - version: "2.0.0"
        command:
          - "{{ _copier_python }}"
          - "{{ _copier_conf.src_path }}/scripts/move_module.py"
          - "{{ package_name }}/services/http_retry.py"
          - "ecosystem_shared/http_retry.py"

Only stdlib: it runs with the Python that runs Copier, not in the bot's environment.
"""

from __future__ import annotations

import argparse
import re
import sys
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


def move_file(root: Path, old: Path, new: Path) -> list[str]:
    """Remove or move `old` so only `new` remains; return human-readable notes."""
    notes: list[str] = []
    old_abs, new_abs = root / old, root / new
    if not old_abs.exists():
        return notes
    if new_abs.exists():
        if old_abs.read_bytes() != new_abs.read_bytes():
            # The bot's copy differs: the new file wins, the old content stays in git history.
            notes.append(
                f"warning: {old} differed from {new}; see `git show HEAD:{old.as_posix()}`"
            )
        old_abs.unlink()
        notes.append(f"removed stale {old}")
    else:
        new_abs.parent.mkdir(parents=True, exist_ok=True)
        old_abs.rename(new_abs)
        notes.append(f"moved {old} -> {new}")
    # Drop directories the move left empty, up to (not including) the bot root.
    parent = old_abs.parent
    while parent != root and parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()
        parent = parent.parent
    return notes


def python_files(root: Path) -> list[Path]:
    """All `*.py` files of the bot, without VCS/virtualenv/cache directories."""
    return sorted(
        path
        for path in root.rglob("*.py")
        if not SKIP_DIRS.intersection(path.relative_to(root).parts[:-1])
    )


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
    for path in python_files(root):
        text = path.read_text(encoding="utf-8")
        updated = dotted.sub(new_module, text)
        if from_parent is not None and new_parent:
            updated = from_parent.sub(
                # Keep the local name the code uses when only the leaf was renamed.
                lambda m: (
                    f"{m[1]}from {new_parent} import {new_leaf}"
                    + (m[2] or ("" if new_leaf == old_leaf else f" as {old_leaf}"))
                ),
                updated,
            )
        if updated != text:
            path.write_text(updated, encoding="utf-8")
            notes.append(f"rewrote imports in {path.relative_to(root)}")
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("old", type=Path, help="old path, relative to the bot root")
    parser.add_argument("new", type=Path, help="new path, relative to the bot root")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="bot root (default: cwd)")
    parser.add_argument(
        "--no-imports", action="store_true", help="do not rewrite imports of the old module"
    )
    args = parser.parse_args(argv)
    root: Path = args.root.resolve()
    old: Path = args.old
    new: Path = args.new
    if old.is_absolute() or new.is_absolute() or ".." in old.parts or ".." in new.parts:
        parser.error("paths must be relative to the bot root")
    notes = move_file(root, old, new)
    old_module, new_module = module_name(old), module_name(new)
    if not args.no_imports and old_module and new_module:
        notes += rewrite_imports(root, old_module, new_module)
    for note in notes:
        print(f"move_module: {note}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
