"""Regenerate examples/ from the answers files in examples/answers/ (or check it is current).

    python scripts/render_examples.py            # re-render every example in place
    python scripts/render_examples.py --check    # exit 1 and print a diff if examples/ is stale
    python scripts/render_examples.py text-bot   # only the named examples

Each examples/answers/<name>.yml is a Copier data file (`copier copy --data-file` accepts it as
is) and examples/<name>/ is exactly what the template's working tree renders from it
(`vcs_ref="HEAD"` includes uncommitted changes). The two lines of the rendered
.copier-answers.yml that depend on where and when it was rendered, `_commit` and `_src_path`,
are dropped so re-renders are byte-stable; a real bot gets them from `copier copy`.
"""

from __future__ import annotations

import argparse
import difflib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as `python scripts/render_examples.py`
    sys.path.insert(0, str(REPO_ROOT))

from devkit.render import copy_template  # noqa: E402 - importable once the root is on the path

EXAMPLES_DIR = REPO_ROOT / "examples"
ANSWERS_DIR = EXAMPLES_DIR / "answers"
ANSWERS_FILE = ".copier-answers.yml"
VOLATILE_KEYS = ("_commit", "_src_path")
MAX_DIFF_FILES = 5
CACHE_DIRS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"})


def example_names() -> list[str]:
    return sorted(path.stem for path in ANSWERS_DIR.glob("*.yml"))


def load_answers(name: str) -> dict[str, Any]:
    data = yaml.safe_load((ANSWERS_DIR / f"{name}.yml").read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise SystemExit(f"examples/answers/{name}.yml must be a mapping of answers")
    return data


def strip_volatile(answers_file: Path) -> None:
    """Drop `_commit`/`_src_path`: they name the render's checkout, not the example."""
    lines = answers_file.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith(tuple(f"{k}:" for k in VOLATILE_KEYS))]
    answers_file.write_text("".join(kept), encoding="utf-8")


def render_example(name: str, dst: Path, template: Path = REPO_ROOT) -> None:
    """Render one example into `dst` (which must not exist yet)."""
    # A dirty working tree is the point here: examples follow uncommitted template edits.
    copy_template(dst, load_answers(name), src=template)
    strip_volatile(dst / ANSWERS_FILE)
    link_bots(name, dst)


def link_bots(name: str, dst: Path) -> None:
    """Put the example bots where the ecosystem expects its bot repositories: next to its
    compose.yaml, as `<slug>/`. Relative symlinks to the sibling examples keep one copy."""
    bots = load_answers(name).get("bots")
    if not isinstance(bots, str):
        return
    known = set(example_names())
    for slug in (part.strip() for part in bots.split(",")):
        if slug in known and not (dst / slug).exists():
            (dst / slug).symlink_to(Path("..") / slug, target_is_directory=True)


def render_all(dest_root: Path, names: Iterable[str]) -> None:
    for name in names:
        render_example(name, dest_root / name)


def tree(root: Path) -> dict[str, bytes]:
    """Every file below `root` by relative posix path (empty when `root` is missing).

    Symlinks are recorded by target, never followed. Tool caches (never rendered, never
    committed) are ignored so running a linter or an example's tests locally changes nothing.
    """
    result: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in CACHE_DIRS)
        for name in sorted(filenames) + [d for d in dirnames if (here / d).is_symlink()]:
            path = here / name
            key = path.relative_to(root).as_posix()
            if path.is_symlink():
                result[key] = b"symlink -> " + os.readlink(path).encode()
            else:
                result[key] = path.read_bytes()
    return result


def diff_trees(expected: Mapping[str, bytes], actual: Mapping[str, bytes], label: str) -> str:
    """Unified diff of the first differing files; empty string when the trees are equal."""
    differing = sorted(
        n for n in expected.keys() | actual.keys() if expected.get(n) != actual.get(n)
    )
    if not differing:
        return ""
    chunks = [f"{label}: {len(differing)} file(s) differ: {', '.join(differing[:20])}\n"]
    for name in differing[:MAX_DIFF_FILES]:
        old, new = expected.get(name), actual.get(name)
        old_lines = old.decode("utf-8", "replace").splitlines(keepends=True) if old else []
        new_lines = new.decode("utf-8", "replace").splitlines(keepends=True) if new else []
        chunks.extend(
            difflib.unified_diff(
                old_lines,
                new_lines,
                fromfile=f"committed/{label}/{name}" if old is not None else "/dev/null",
                tofile=f"rendered/{label}/{name}" if new is not None else "/dev/null",
            )
        )
        chunks.append("\n")
    return "".join(chunks)


def check(names: list[str]) -> str:
    """Render into a temporary directory and return the diff against examples/ ('' if equal)."""
    with tempfile.TemporaryDirectory(prefix="examples-") as tmp:
        render_all(Path(tmp), names)
        return "".join(
            diff_trees(tree(EXAMPLES_DIR / name), tree(Path(tmp) / name), name) for name in names
        )


def regenerate(names: list[str]) -> None:
    """Render into a temporary directory first, then swap, so a failed render changes nothing."""
    with tempfile.TemporaryDirectory(prefix="examples-") as tmp:
        render_all(Path(tmp), names)
        for name in names:
            target = EXAMPLES_DIR / name
            if target.exists():
                shutil.rmtree(target)  # stale files of a removed feature must go too
            shutil.copytree(Path(tmp) / name, target, symlinks=True)
            print(f"rendered examples/{name}/", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("names", nargs="*", help="examples to render (default: all)")
    parser.add_argument("--check", action="store_true", help="only report differences")
    args = parser.parse_args(argv)
    known = example_names()
    names: list[str] = args.names or known
    if unknown := sorted(set(names) - set(known)):
        parser.error(f"no examples/answers/<name>.yml for: {', '.join(unknown)}")
    if args.check:
        diff = check(names)
        sys.stdout.write(diff)
        return 1 if diff else 0
    regenerate(names)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
