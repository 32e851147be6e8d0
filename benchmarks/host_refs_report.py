"""``host.py --refs``: the host mode of the bots rendered from each ref, each ref's figures
and the medians of its per-round ratios to the last ref, and the table."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from benchmarks.host_report import MIB, ModeResult
from benchmarks.refs import compared
from benchmarks.table import aligned, median_cell, ratio_cell


def children_private_dirty_mib(result: ModeResult) -> float:
    """The median private dirty memory of the host's bot children (what each pays alone)."""
    children = [
        kib for label, kib in result.private_dirty_kib.items() if label.startswith("bench-")
    ]
    return statistics.median(children) / MIB if children else 0.0


# JSON name -> (table name, value of one host run, format, unit).
FIGURES: dict[str, tuple[str, Callable[[ModeResult], float], str, str]] = {
    "total_pss_mib": ("Total PSS after the traffic", lambda r: r.total_pss_mib, ".0f", " MiB"),
    "idle_pss_mib": (
        "Total PSS after one /start each",
        lambda r: sum(r.idle_pss_kib.values()) / MIB,
        ".0f",
        " MiB",
    ),
    "parent_pss_mib": (
        "  of it the host parent",
        lambda r: r.pss_kib.get("host parent", 0) / MIB,
        ".1f",
        " MiB",
    ),
    "child_private_dirty_mib": (
        "Private dirty per child (median)",
        children_private_dirty_mib,
        ".1f",
        " MiB",
    ),
    "start_s": ("Start until every bot polls", lambda r: r.start_s, ".1f", " s"),
    "restart_s": ("A killed bot answers again", lambda r: r.restart_s, ".2f", " s"),
    "updates_per_s": (
        "/start throughput per bot (median)",
        lambda r: r.median_updates_s,
        ".0f",
        " upd/s",
    ),
}


def refs_summary(results: Mapping[str, Sequence[ModeResult]]) -> dict[str, Any]:
    """Per figure and ref: median, per-round values, per-round ratios to the last ref and their
    median; and the events stored (the JSON's "summary")."""
    summary: dict[str, Any] = {
        figure: compared({ref: [value(r) for r in runs] for ref, runs in results.items()})
        for figure, (_, value, _, _) in FIGURES.items()
    }
    summary["events"] = {
        ref: [sum(r.events_stored for r in runs), sum(r.events_expected for r in runs)]
        for ref, runs in results.items()
    }
    return summary


def refs_table(
    summary: Mapping[str, Any],
    commits: Mapping[str, str],
    bots: int,
    users: int,
    rounds: int,
    python: str,
) -> str:
    refs = list(commits)
    rows: list[list[str]] = [["Figure (median; range)", *refs]]
    rows.append(["Commit", *(commits[ref][:10] for ref in refs)])
    for figure, (name, _, spec, unit) in FIGURES.items():
        found = [summary[figure][ref] for ref in refs]
        rows.append([name, *(median_cell(f, spec, unit) for f in found)])
        rows.append([f"  / {refs[-1]}, per round", *map(ratio_cell, found)])
    events = summary["events"]
    rows.append(["user_start events stored", *(f"{events[r][0]} / {events[r][1]}" for r in refs)])
    return "\n".join(
        [
            "",
            f"Host mode of {bots} bots rendered from each ref"
            f" ({', '.join(f'{r} = {c}' for r, c in commits.items())}; HEAD: the working tree),"
            f" on {python}",
            f"{rounds} round(s), the refs' order reversing every round; each bot answered /start"
            f" from {users} distinct users pushed at once; driven by {refs[-1]}'s test kit.",
            "",
            *aligned(rows),
            "",
        ]
    )
