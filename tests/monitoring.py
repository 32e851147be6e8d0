"""Real Prometheus and Alertmanager for the monitoring tests, started on loopback like PostgreSQL.

Debian's packages (``apt-get install prometheus prometheus-alertmanager``, which bring
``promtool`` and ``amtool``) are looked up on PATH; when missing the tests fail with the package
to install, never skip. Each server lives in a temporary directory removed by ``cleanup()``;
the binaries are found as the bots' test kit finds redis-server and nginx.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from devkit.testkit import shared_module

servers = shared_module("testing.servers")


def find_binary(name: str, package: str) -> str:
    return str(servers.find_binary(name, package))


class Server:
    """A server process in a temporary directory, ready once ``ready_path`` answers 200."""

    name = "server"
    ready_path = "/-/ready"

    def __init__(self) -> None:
        self.port = int(servers.free_port())
        self.root = Path(tempfile.mkdtemp(prefix=f"ecosystem-{self.name}-"))
        self.log_file = self.root / "server.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> None:
        with self.log_file.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.root
            )
        wait_ready(self.url + self.ready_path, self, timeout)

    def cleanup(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        shutil.rmtree(self.root, ignore_errors=True)


def promtool() -> str:
    return find_binary("promtool", "prometheus")


def amtool() -> str:
    return find_binary("amtool", "prometheus-alertmanager")


def get_json(url: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


class PrometheusServer(Server):
    """``prometheus`` with ``config`` (a dict: written as YAML next to copies of its rule files)."""

    name = "prometheus"

    def __init__(self, config: dict[str, Any], rules: dict[str, str] | None = None) -> None:
        super().__init__()
        self.config_file = self.root / "prometheus.yml"
        self.config_file.write_text(yaml.safe_dump(config), encoding="utf-8")
        for name, text in (rules or {}).items():
            (self.root / name).write_text(text, encoding="utf-8")

    def command(self) -> list[str]:
        return [
            find_binary("prometheus", "prometheus"),
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.root / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector of ``expr`` now (``[]`` when it has no data)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        answer = get_json(url)
        assert answer["status"] == "success", answer
        result = answer["data"]["result"]
        assert isinstance(result, list)
        return result

    def targets(self) -> list[dict[str, Any]]:
        answer = get_json(f"{self.url}/api/v1/targets?state=active")
        active = answer["data"]["activeTargets"]
        assert isinstance(active, list)
        return active

    def alerts(self) -> list[dict[str, Any]]:
        alerts = get_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]
        assert isinstance(alerts, list)
        return alerts


class AlertmanagerServer(Server):
    """``prometheus-alertmanager`` with a configuration file, clustering off (no gossip port)."""

    name = "alertmanager"

    def __init__(self, config_file: Path) -> None:
        super().__init__()
        self.config_file = config_file

    def command(self) -> list[str]:
        return [
            find_binary("prometheus-alertmanager", "prometheus-alertmanager"),
            f"--config.file={self.config_file}",
            f"--storage.path={self.root / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]


def wait_ready(url: str, process: Server, timeout: float = 30.0) -> None:
    """Until ``url`` (a ``/-/ready``) answers 200."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline or not process.running:
            log = process.log_file.read_text(errors="replace")[-2000:]
            raise AssertionError(f"{url} not ready:\n{log}")
        time.sleep(0.2)
