"""``run.py --refs``: each ref's figures, the medians of its per-round ratios to the last ref,
and the table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.config import MIB, PACKAGE, RATE_LIMIT_SECONDS, Config, label, ref_variant
from benchmarks.refs import compared
from benchmarks.results import BotRun, Results, median, ratio
from benchmarks.table import aligned, closing_lines, fmt, machine_lines, median_cell, ratio_cell

# The figures of a bot round compared across refs:
# JSON name -> (table name, value of one run, format, unit).
FIGURES: dict[str, tuple[str, Callable[[BotRun], float], str, str]] = {
    "updates_per_s": ("/start throughput", lambda run: run.updates_per_s, ".0f", " upd/s"),
    "cpu_us_per_update": (
        "Bot CPU per update",
        lambda run: run.cpu_s / run.updates * 1e6,
        ".0f",
        " us",
    ),
    "idle_rss_mib": ("Idle RSS", lambda run: run.idle_rss_kb / MIB, ".1f", " MiB"),
    "startup_s": ("Startup to polling", lambda run: run.startup_s, ".2f", " s"),
}


def summarize_refs(res: Results, refs: Sequence[str]) -> dict[str, Any]:
    """Per figure: the median and per-round values of bare_bot.py and of each ref, and each
    ref's per-round ratios to the last ref with their median (the JSON's "summary")."""
    summary: dict[str, Any] = {"refs": {}, "bare": {}}
    for ref in refs:
        runs = res.runs(ref_variant(ref))
        summary["refs"][ref] = {
            "commit": res.refs.get(ref),
            "render_median_s": median(res.ref_render_seconds.get(ref, [])),
            "events_expected": sum(run.events_expected or 0 for run in runs),
            "events_stored": sum(run.events_stored or 0 for run in runs),
            "db_lost": sum(run.db_lost for run in runs),
            "upserts_deferred": sum(run.upserts_deferred for run in runs),
        }
    for figure, (_, value, _, _) in FIGURES.items():
        bare = [value(run) for run in res.runs("bare")]
        summary["bare"][figure] = {"median": median(bare), "rounds": bare}
        per_round = {ref: [value(run) for run in res.runs(ref_variant(ref))] for ref in refs}
        for ref, figures in compared(per_round).items():
            figures["ratio_to_bare"] = ratio(figures["median"], median(bare))
            summary["refs"][ref][figure] = figures
    return summary


def refs_table(res: Results, summary: dict[str, Any], config: Config) -> str:
    refs = list(config.refs)
    last = refs[-1]
    rows: list[list[str]] = [["Figure (median; range)", *refs, label("bare")]]
    rows.append(["Commit", *(str(res.refs.get(ref, "?"))[:10] for ref in refs), ""])
    rows.append(
        [
            "Render one bot (copier copy)",
            *(fmt(summary["refs"][ref]["render_median_s"], ".2f", " s") for ref in refs),
            "",
        ]
    )
    for figure, (name, _, spec, unit) in FIGURES.items():
        ratios = [summary["refs"][ref][figure] for ref in refs]
        bare = summary["bare"][figure]
        rows.append(
            [name, *(median_cell(r, spec, unit) for r in ratios), fmt(bare["median"], spec, unit)]
        )
        rows.append([f"  / {last}, per round", *map(ratio_cell, ratios), ""])
        rows.append(
            ["  / bare (medians)", *(fmt(r["ratio_to_bare"], ".2f", "x") for r in ratios), ""]
        )
    rows.append(
        [
            "Events stored (+warm-ups)",
            *(f"{s['events_stored']} / {s['events_expected']}" for s in summary["refs"].values()),
            "",
        ]
    )
    rows.append(
        [
            "  database outages, upserts deferred",
            *(f"{s['db_lost']}, {s['upserts_deferred']}" for s in summary["refs"].values()),
            "",
        ]
    )
    out = [
        *machine_lines(res, config),
        f"Refs: {', '.join(f'{ref} = {res.refs.get(ref)}' for ref in refs)}"
        " (HEAD: the working tree, uncommitted edits included)",
        f"Throughput: {config.rounds} round(s) of bare_bot.py and python -m {PACKAGE} rendered"
        " from each ref, in an order that reverses every round; each a fresh process, warm-up"
        f" /start, {config.idle_seconds:g} s idle (RSS read), then {config.updates} /start from"
        f" {config.users} users, timed from push to the {config.updates}-th reply. Generated"
        f" bots: DATABASE_URL set, ENABLE_ANALYTICS=true, RATE_LIMIT_SECONDS={RATE_LIMIT_SECONDS};"
        f" driven by {last}'s test kit. Ingest and the rate limiter are not compared.",
        "",
        *aligned(rows),
        "",
        *closing_lines(res),
    ]
    return "\n".join(out)
