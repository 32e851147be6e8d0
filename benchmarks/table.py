"""The pieces of the printed tables that every run.py report shares."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.config import Config
from benchmarks.results import Results


def fmt(value: float | None, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def spread(values: Sequence[float], spec: str) -> str:
    return f"{min(values):{spec}}-{max(values):{spec}}" if values else ""


def median_cell(found: Mapping[str, Any], spec: str, unit: str) -> str:
    """A ref's figure (one of :func:`benchmarks.refs.compared`'s): median; range of rounds."""
    return f"{fmt(found['median'], spec, unit)}; {spread(found['rounds'], spec)}"


def ratio_cell(found: Mapping[str, Any]) -> str:
    """A ref's median ratio to the last ref; the range of its per-round ratios."""
    return f"{fmt(found['ratio_to_last'], '.2f', 'x')}; {spread(found['ratios'], '.2f')}"


def machine_lines(res: Results, config: Config) -> list[str]:
    """The table's opening: title, machine, load, versions, PostgreSQL."""
    m = res.machine
    load = m.get("load_average_start", [0.0])[0], m.get("load_average_end", [0.0])[0]
    return [
        "",
        "=" * 100,
        "Bot template benchmark" + (" (--quick)" if config.quick else ""),
        f"Machine: nproc {m.get('nproc')} ({m.get('usable_cpus')} usable), {m.get('cpu_model')},"
        f" {m.get('memory')} RAM; Python {m.get('python')}; {m.get('platform')}",
        f"Load average (1 min) at start/end: {load[0]:.2f} / {load[1]:.2f}",
        f"aiogram {m.get('aiogram')}, asyncpg {m.get('asyncpg')}, copier {m.get('copier')};"
        f" PostgreSQL {m.get('postgresql', '?')}: {m.get('postgres_source', '?')}",
    ]


def aligned(rows: Sequence[Sequence[str]]) -> list[str]:
    """``rows[0]`` as the header, a rule under it, every column padded to its widest cell."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(cells: Sequence[str]) -> str:
        return " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True))

    return [line(rows[0]), "-+-".join("-" * width for width in widths), *map(line, rows[1:])]


def closing_lines(res: Results) -> list[str]:
    """Notes, then FAILED lines or the OK line, and the closing rule."""
    out = [f"Note: {note}" for note in res.notes]
    if res.problems:
        out += [f"FAILED: {problem}" for problem in res.problems]
    else:
        out.append("OK: every user_start event of the generated bot is in the database.")
    return [*out, "=" * 100]
