"""Which modules the bots import, found by reading (not importing) their code, and importing
them in the host's parent so that every forked child shares them.

Left out: the bots' own packages and their ``ecosystem_shared`` (two bots may be on different
template versions and each child must import its own copy), their test-only code, and what a
bot only runs as a subprocess of its own.
"""

from __future__ import annotations

import ast
import importlib
import itertools
import sys
from collections.abc import Iterable

from ecosystem_host.bots import Bot

# Never imported in the parent: each child imports its own (bot-specific versions).
_OWN = ("ecosystem_shared",)
# Test-only code of a bot (pytest, the fake Bot API) is not what production children run.
_SKIPPED_DIRS = frozenset({"testing", "tests", "__pycache__"})


def _subprocess_modules(tree: ast.AST) -> set[str]:
    """Modules a file starts as their own process: ``(sys.executable, "-m", "pkg.mod")``."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List | ast.Call):
            items = node.args if isinstance(node, ast.Call) else node.elts
            for flag, name in itertools.pairwise(items):
                if (
                    isinstance(flag, ast.Constant)
                    and flag.value == "-m"
                    and isinstance(name, ast.Constant)
                    and isinstance(name.value, str)
                ):
                    found.add(name.value)
    return found


def imported_modules(bots: Iterable[Bot]) -> list[str]:
    """Absolute module names the bots' production code imports, their own packages excluded.

    A module the bots run as a subprocess (``python -m ecosystem_shared.chart``: matplotlib,
    about 40 MiB) is no child's import, so its imports are left out.
    """
    names: set[str] = set()
    own = set(_OWN)
    trees: list[tuple[str, ast.AST]] = []  # (module name, its code)
    for bot in bots:
        own.add(bot.package)
        for root in (bot.directory / "ecosystem_shared", bot.directory / bot.package):
            for path in root.rglob("*.py"):
                if _SKIPPED_DIRS.intersection(path.relative_to(root).parts):
                    continue
                parts = path.relative_to(bot.directory).with_suffix("").parts
                module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
                try:
                    trees.append((module, ast.parse(path.read_bytes(), filename=str(path))))
                except (OSError, SyntaxError, ValueError):
                    continue  # the child will report it when it imports the file
    subprocesses = set().union(*(_subprocess_modules(tree) for _, tree in trees))
    for module, tree in trees:
        if module in subprocesses:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
    return sorted(
        name
        for name in names
        if name.split(".")[0] not in own and name.split(".")[0] != "__future__"
    )


def import_shared(bots: Iterable[Bot]) -> tuple[list[str], list[str]]:
    """Import every module the bots use; returns (imported, failed) names."""
    imported, failed = [], []
    for name in imported_modules(bots):
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a child that needs it reports the real error
            failed.append(name)
        else:
            imported.append(name)
    leaked = [name for name in sys.modules if name.split(".")[0] in _OWN]
    if leaked:  # a library imported a bot module: children would share the wrong copy
        raise RuntimeError(f"the preload imported bot code: {', '.join(sorted(leaked))}")
    return imported, failed
