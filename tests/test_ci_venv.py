""".ci/python-env, the part of .ci/run that makes its virtual environment: isolated from the
machine's packages, reused on a rerun only while it is what a fresh run would make."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO_ROOT, child_env, run

SCRIPT = REPO_ROOT / ".ci" / "python-env"


def python_env(venv: Path, requirements: Path) -> subprocess.CompletedProcess[str]:
    # A venv's interpreter makes venvs from its base interpreter, as python3 would.
    env = child_env(PYTHON3=sys.executable)
    return run(
        ["bash", str(SCRIPT), str(venv), str(requirements)], venv.parent, timeout=300, env=env
    )


def made(result: subprocess.CompletedProcess[str]) -> bool:
    assert result.returncode == 0, result.stdout
    return "-m venv" in result.stdout


def test_a_venv_without_the_machines_packages_reused_while_nothing_changed(tmp_path: Path) -> None:
    venv, requirements = tmp_path / "venv", tmp_path / "requirements.txt"
    requirements.write_text("# nothing: the test looks at the environment itself\n")
    assert made(python_env(venv, requirements))
    python = venv / "bin" / "python"
    assert "include-system-site-packages = false" in (venv / "pyvenv.cfg").read_text()
    # pytest runs this test, so the interpreter it came from has it; the venv must not.
    probe = subprocess.run([python, "-c", "import pytest"], capture_output=True, check=False)
    assert probe.returncode != 0, "the venv sees packages it did not install"

    stamp = venv / ".ci-stamp"
    before = stamp.stat().st_mtime_ns
    again = python_env(venv, requirements)
    assert not made(again) and "reusing" in again.stdout
    assert stamp.stat().st_mtime_ns == before

    # A changed file: made anew, so a requirement removed from it is gone from the venv too.
    requirements.write_text("# changed\n")
    changed = python_env(venv, requirements)
    assert made(changed) and "replacing" in changed.stdout

    python.unlink()  # a venv that no longer works
    broken = python_env(venv, requirements)
    assert made(broken) and "replacing" in broken.stdout
    assert subprocess.run([python, "-c", "pass"], check=False).returncode == 0


def test_an_interrupted_install_is_not_reused(tmp_path: Path) -> None:
    venv, requirements = tmp_path / "venv", tmp_path / "requirements.txt"
    requirements.write_text("--no-index\nno-such-distribution-for-this-test\n")
    first = python_env(venv, requirements)
    assert first.returncode != 0 and "-m venv" in first.stdout
    assert not (venv / ".ci-stamp").exists()
    second = python_env(venv, requirements)
    assert second.returncode != 0 and "replacing" in second.stdout, second.stdout
