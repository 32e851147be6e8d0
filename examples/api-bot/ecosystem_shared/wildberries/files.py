"""File helpers of the client: atomic writes (the route map copy) and quiet removal."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` by renaming a fresh private file over it: readers never see half a file,
    and nothing planted at a predictable name (a symlink in a shared /tmp) is followed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise


def discard(path: Path) -> None:
    """Remove ``path`` if it is there; a file that cannot be removed is not an error here."""
    with contextlib.suppress(OSError):
        path.unlink()
