"""Other Pythons for the host: finding a CPython 3.12 or 3.13, and a venv with the bots' needs.

The template's tests and benchmarks run on whichever Python runs them (3.11 on the CI machines),
but the host image's default interpreter is 3.12, where ``ecosystem_host`` makes the preloaded
heap immortal (PEP 683). ``immortal_capable_python`` looks, in order, at ``HOST_TEST_PYTHON``,
the running interpreter, then 3.12 and 3.13 (``python3.N`` on the PATH, then pyenv's versions).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

IMMORTAL_VERSIONS = frozenset({(3, 12), (3, 13)})


def version_of(python: str) -> tuple[int, int] | None:
    """(major, minor) of a CPython interpreter that starts, or None."""
    try:
        found = subprocess.run(
            [python, "-c", "import sys; print(sys.implementation.name, *sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    fields = found.stdout.split()
    if found.returncode != 0 or len(fields) != 3 or fields[0] != "cpython":
        return None
    return int(fields[1]), int(fields[2])


def _installed(version: str) -> list[str | None]:
    """Where a ``3.N`` interpreter may be: ``python3.N`` on the PATH, then pyenv's."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    return [shutil.which(f"python{version}")] + [
        str(path) for path in sorted(pyenv.glob(f"{version}.*/bin/python3"))
    ]


def find_python(wanted: str) -> str:
    """``3.12`` → a working CPython 3.12 here (PATH, pyenv); anything else is taken as given."""
    if not re.fullmatch(r"3\.\d+", wanted):
        return wanted
    version = tuple(map(int, wanted.split(".")))
    for candidate in _installed(wanted):
        if candidate and version_of(candidate) == version:
            return candidate
    raise RuntimeError(f"no working Python {wanted} on this machine (PATH, pyenv)")


def immortal_capable_python() -> str | None:
    """A CPython 3.12 or 3.13 interpreter on this machine, or None."""
    candidates = [os.environ.get("HOST_TEST_PYTHON"), sys.executable]
    candidates += _installed("3.12") + _installed("3.13")
    for candidate in candidates:
        if candidate and version_of(candidate) in IMMORTAL_VERSIONS:
            return candidate
    return None


def bots_venv(base: str, ecosystem: Path, slugs: Sequence[str], venv: Path) -> str:
    """A venv made from ``base`` with every dependency the bots of ``ecosystem`` declare (what
    the host image installs); returns its interpreter. Raises RuntimeError with pip's words."""

    def step(*command: str) -> str:
        done = subprocess.run(
            list(command), cwd=ecosystem, capture_output=True, text=True, timeout=900, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:4])} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    step(base, "-m", "venv", str(venv))
    wanted = step(sys.executable, "-m", "ecosystem_host", "--requirements", *slugs).split()
    python = str(venv / "bin" / "python")
    step(python, "-m", "pip", "install", "-q", *wanted)
    return python
