"""``--dist loadgroup`` (pyproject.toml) keeps every test of one ``xdist_group`` on one worker.

The suite relies on it: module fixtures (a rendered bot, a running ecosystem, one swarm) are set
up once per worker and assume no other worker runs the same module's tests. A pytest or
pytest-xdist upgrade that loses the grouping (as pytest 9.2 with xdist 3.8 did, see the hook in
conftest.py) fails here instead of making the engine tests trip over each other.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = "tests/xdist_probe/probe_groups.py"


def test_every_test_of_a_group_runs_on_one_worker() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:cacheprovider",
         "-p", "no:randomly", "-n", "2", "--dist", "loadgroup", "-v", PROBE],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    workers: defaultdict[str, set[str]] = defaultdict(set)
    ran = re.findall(r"\[(gw\d+)\] \[\s*\d+%\] PASSED (\S+)", result.stdout)
    for worker, nodeid in ran:
        workers[nodeid.rpartition("@")[2] if "@" in nodeid else nodeid].add(worker)
    assert len(ran) == 12, result.stdout[-3000:]
    # test_own_group carries both marks (its own and the module's): xdist joins their names.
    assert set(workers) == {"probe-module", "probe-module_probe-own"}, dict(workers)
    assert all(len(ws) == 1 for ws in workers.values()), dict(workers)
