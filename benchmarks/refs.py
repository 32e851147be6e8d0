"""Versions of the template side by side: git refs checked, rendered, run in alternating order.

Shared by the benchmarks that take ``--refs`` (``test_loop.py``, ``run.py``, ``host.py``).
``HEAD`` renders the working tree, uncommitted edits included, as the template's tests do.
"""

from __future__ import annotations

import re
import statistics
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from devkit.render import REPO_ROOT, copy_template

T = TypeVar("T")


def resolve(refs: Sequence[str], repo: Path = REPO_ROOT) -> dict[str, str]:
    """Each ref's commit (full hash); a ref git does not know, or one given twice, stops the
    run before anything is rendered."""
    if len(set(refs)) != len(refs):
        raise SystemExit(f"--refs names a ref twice: {' '.join(refs)}")
    commits = {}
    for ref in refs:
        found = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=False,
        )
        if found.returncode != 0:
            raise SystemExit(f"--refs: {ref!r} is not a commit of {repo}")
        commits[ref] = found.stdout.strip()
    return commits


def ref_dir(root: Path, ref: str) -> Path:
    """Where :func:`render_ref` puts ``ref``'s render: a directory of ``root`` named after it."""
    return root / re.sub(r"\W", "_", ref)


def render_ref(root: Path, ref: str, answers: Mapping[str, Any]) -> Path:
    """``copier copy`` of the template at ``ref`` into :func:`ref_dir`; returns that."""
    return copy_template(ref_dir(root, ref), answers, vcs_ref=ref)


def alternating(items: Sequence[T], round_no: int) -> list[T]:
    """The run order of round ``round_no`` (from 0): as given, then reversed, and so on, so
    that no item always runs first or after the same neighbour while the machine drifts."""
    return list(items) if round_no % 2 == 0 else list(reversed(items))


def ratios_to_last(per_round: Mapping[str, Sequence[float]]) -> dict[str, list[float]]:
    """Round by round, each ref's figure over the last ref's (the mapping's last key)."""
    last = list(per_round)[-1]
    base = per_round[last]
    return {
        # zip stops at the shorter list: a run cut short leaves rounds only some refs ran
        ref: [value / b for value, b in zip(values, base, strict=False) if b]
        for ref, values in per_round.items()
    }


def compared(per_round: Mapping[str, Sequence[float]]) -> dict[str, dict[str, Any]]:
    """Per ref: its median, its value per round, its ratios to the last ref per round and
    their median (None where there is nothing to take one of)."""
    ratios = ratios_to_last(per_round)
    return {
        ref: {
            "median": statistics.median(values) if values else None,
            "rounds": list(values),
            "ratio_to_last": statistics.median(ratios[ref]) if ratios[ref] else None,
            "ratios": ratios[ref],
        }
        for ref, values in per_round.items()
    }
