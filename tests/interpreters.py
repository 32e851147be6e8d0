"""Finding a CPython 3.12 or 3.13 for what only happens there: immortal objects (PEP 683).

The template's tests run on whichever Python runs pytest (3.11 on the CI machines), but the host
image's default interpreter is 3.12, where ``ecosystem_host`` makes the preloaded heap immortal.
Looked for, in order: ``HOST_TEST_PYTHON``, the running interpreter, ``python3.12`` and
``python3.13`` on the PATH, then pyenv's versions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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


def immortal_capable_python() -> str | None:
    """A CPython 3.12 or 3.13 interpreter on this machine, or None."""
    candidates = [os.environ.get("HOST_TEST_PYTHON"), sys.executable]
    candidates += [shutil.which(f"python3.{minor}") for minor in (12, 13)]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += [str(path) for path in sorted(pyenv.glob("3.1[23].*/bin/python3"))]
    for candidate in candidates:
        if candidate and version_of(candidate) in IMMORTAL_VERSIONS:
            return candidate
    return None
