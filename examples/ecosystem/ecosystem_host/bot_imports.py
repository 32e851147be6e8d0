"""Which modules the bots import, found by reading (not importing) their code, and importing
them in the host's parent so that every forked child shares them.

Left out: the bots' own packages and their ``ecosystem_shared`` (two bots may be on different
template versions and each child must import its own copy), their test-only code, and what a
bot only runs as a subprocess of its own.
"""

from __future__ import annotations

import ast
import hashlib
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


def _file_imports(tree: ast.AST) -> set[str]:
    """The absolute module names a file imports."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def imported_modules(bots: Iterable[Bot]) -> list[str]:
    """Absolute module names the bots' production code imports, their own packages excluded.

    A module the bots run as a subprocess (``python -m ecosystem_shared.chart``: matplotlib,
    about 40 MiB) is no child's import, so its imports are left out.

    Each file's syntax tree is read and dropped at once, and a file identical to one already
    read (every bot's ``ecosystem_shared`` of one template version) is not parsed again: the
    heap this parse grows stays in the parent, shared with every child (ten bots kept every
    tree alive at once: +21 MiB of parent RSS, benchmarks/README.md).
    """
    own = set(_OWN)
    imports: dict[str, set[str]] = {}  # module name -> what its files import
    subprocesses: set[str] = set()
    read: dict[bytes, tuple[set[str], set[str]]] = {}  # content digest -> (imports, subprocesses)
    for bot in bots:
        own.add(bot.package)
        for root in (bot.directory / "ecosystem_shared", bot.directory / bot.package):
            for path in root.rglob("*.py"):
                if _SKIPPED_DIRS.intersection(path.relative_to(root).parts):
                    continue
                parts = path.relative_to(bot.directory).with_suffix("").parts
                module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
                try:
                    source = path.read_bytes()
                    digest = hashlib.blake2b(source, digest_size=16).digest()
                    if digest not in read:
                        tree = ast.parse(source, filename=str(path))
                        read[digest] = (_file_imports(tree), _subprocess_modules(tree))
                except (OSError, SyntaxError, ValueError):
                    continue  # the child will report it when it imports the file
                file_imports, started = read[digest]
                imports.setdefault(module, set()).update(file_imports)
                subprocesses |= started
    names = set().union(*(found for module, found in imports.items() if module not in subprocesses))
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
