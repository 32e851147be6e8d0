"""Stand-in images for the end-to-end tests, built from Debian's packages on this machine.

Image registries are unreachable here, so nothing is pulled: a minimal Debian root file system
(``debootstrap --variant=minbase``) is imported as ``ecosystem-standin/debian``, and small images
are built on it. They are named as what they are and never tagged with official names; the
ecosystem is pointed at them through its image variables (POSTGRES_IMAGE, PYTHON_IMAGE, ...), the
same variables a user behind a mirror sets. Only these test images trust this machine's CA bundle
(containers reach the package registries through a TLS-intercepting proxy); the product's
Dockerfiles never do. Each image is built once per engine and reused (Docker's layer cache).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

IMAGES_DIR = Path(__file__).parent / "images"
SUITE = "bookworm"
# The host image's default is python:3.12-slim; bookworm's Python is 3.11, which has no immortal
# objects (PEP 683), so the host runs on trixie's Python 3.13, where ecosystem_host uses them.
HOST_SUITE = "trixie"
DEBIAN_MIRROR = os.environ.get("STANDIN_DEBIAN_MIRROR", "http://deb.debian.org/debian")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
IN_IMAGE_CA = "/etc/ssl/host-ca.crt"

BASE = f"ecosystem-standin/debian:{SUITE}"
PYTHON = "ecosystem-standin/python:3.11"
HOST_PYTHON = "ecosystem-standin/python:3.13"
PYTHON_SUITES = {PYTHON: SUITE, HOST_PYTHON: HOST_SUITE}
POSTGRES = "ecosystem-standin/postgres:15"
FAKE_BOT_API = "ecosystem-standin/fake-bot-api:latest"
# The Swarm stack's proxy and shared state (compose.yaml's are fixed official images).
CADDY = "ecosystem-standin/caddy:2"
REDIS = "ecosystem-standin/redis:7"
# The monitoring option's servers (images/prometheus: one Dockerfile, a target each).
PROMETHEUS = "ecosystem-standin/prometheus:2"
ALERTMANAGER = "ecosystem-standin/alertmanager:0"


@dataclass(frozen=True)
class StandIns:
    python: str = PYTHON
    postgres: str = POSTGRES
    fake_bot_api: str = FAKE_BOT_API

    def env(self) -> dict[str, str]:
        """The ecosystem's image variables pointing at the stand-ins."""
        return {
            "PYTHON_IMAGE": self.python,
            "POSTGRES_IMAGE": self.postgres,
            "BACKUP_IMAGE": self.postgres,
            "TELEGRAM_BOT_API_IMAGE": self.fake_bot_api,
        }


def docker(*args: str, stdin: IO[bytes] | None = None, timeout: float = 900) -> str:
    """Run a docker command; its stdout, or an error carrying what docker said."""
    result = subprocess.run(
        ["docker", *args], stdin=stdin, capture_output=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"docker {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout.decode(errors='replace')[-3000:]}\n"
            f"{result.stderr.decode(errors='replace')[-3000:]}"
        )
    return result.stdout.decode(errors="replace")


def image_exists(name: str) -> bool:
    return (
        subprocess.run(
            ["docker", "image", "inspect", name], capture_output=True, check=False
        ).returncode
        == 0
    )


def base_image(suite: str) -> str:
    return f"ecosystem-standin/debian:{suite}"


def build_base(suite: str = SUITE) -> None:
    """debootstrap a minimal Debian and import it, trusting this machine's CA bundle."""
    if image_exists(base_image(suite)):
        return
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is missing: apt-get install debootstrap (see .ci/run)")
    with tempfile.TemporaryDirectory(prefix="standin-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=ca-certificates", suite, str(root),
             DEBIAN_MIRROR],
            check=True, capture_output=True, timeout=900,
        )  # fmt: skip
        shutil.copyfile(HOST_CA_BUNDLE, root / IN_IMAGE_CA.lstrip("/"))
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        ca = IN_IMAGE_CA
        changes = f"ENV SSL_CERT_FILE={ca} PIP_CERT={ca} REQUESTS_CA_BUNDLE={ca}"
        docker("import", "-c", changes, "-", base_image(suite), stdin=tar.stdout)
        if tar.wait() != 0:
            raise RuntimeError("tar of the debootstrap root failed")


def build(name: str, context: Path, dockerfile: Path | None = None, *args: str) -> None:
    options = ["build", "-q", "-t", name, *args]
    if dockerfile is not None:
        options += ["-f", str(dockerfile)]
    docker(*options, str(context))


def build_standins(shared_package: Path, standins: StandIns) -> None:
    """Every stand-in image ``standins`` names; ``shared_package`` is a rendered bot's
    ``ecosystem_shared``, whose test kit (``testing/fake_bot_api/`` and what it imports)
    serves as the Local Bot API."""
    build_base()
    suite = PYTHON_SUITES[standins.python]
    build_base(suite)
    build(
        standins.python,
        IMAGES_DIR / "python",
        None,
        "--build-arg",
        f"BASE_IMAGE={base_image(suite)}",
    )
    build(POSTGRES, IMAGES_DIR / "postgres")
    with tempfile.TemporaryDirectory(prefix="standin-fake-api-") as tmp:
        context = Path(tmp)
        shutil.copy(IMAGES_DIR / "fake-bot-api" / "server.py", context)
        shutil.copytree(shared_package, context / "ecosystem_shared")
        build(FAKE_BOT_API, context, IMAGES_DIR / "fake-bot-api" / "Dockerfile")


def build_stack_standins() -> None:
    """The images the Swarm stack needs beyond :func:`build_standins`: Caddy and Redis."""
    build_base()
    build(CADDY, IMAGES_DIR / "caddy")
    build(REDIS, IMAGES_DIR / "redis")


def build_monitoring_standins() -> None:
    """Prometheus and Alertmanager from Debian's packages (the ``with_monitoring`` services)."""
    build_base()
    for image, target in ((PROMETHEUS, "prometheus"), (ALERTMANAGER, "alertmanager")):
        build(image, IMAGES_DIR / "prometheus", None, "--target", target)
