"""Draws the digest chart: ``python -m ecosystem_shared.chart < data.json > chart.png``.

Runs as a short-lived subprocess (see :mod:`ecosystem_shared.digest_chart`): matplotlib and its
fonts never enter a bot process, whose resident memory would keep them until exit. Drawn with
the object-oriented :class:`~matplotlib.figure.Figure` API on the Agg backend (no pyplot, which
keeps figures alive), in DejaVu Sans: the font that ships inside matplotlib itself
(``matplotlib/mpl-data/fonts/ttf/DejaVuSans.ttf``) and covers Latin and Cyrillic.
The Dockerfile builds matplotlib's font cache in ``MPLCONFIGDIR`` so that no chart pays for it.
"""

from __future__ import annotations

import io
import sys
import textwrap
from datetime import date
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, MaxNLocator

from ecosystem_shared.stats import SERIES, ChartData
from ecosystem_shared.texts import shared_texts

FONT = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
FONT_FAMILY = "DejaVu Sans"
# 1200 px wide: Telegram shows photos up to 1280 px on the long side without scaling them down.
WIDTH_INCHES, DPI = 8.0, 150
PANEL_INCHES, LEGEND_LINE_INCHES, TITLE_INCHES = 2.2, 0.22, 0.5
# A bot name in the legend: lines of up to 30 characters (two columns fit 1200 px), at most
# three lines (BOT_NAME has at most 64 characters: shown whole).
NAME_WIDTH, NAME_LINES = 30, 3
HEADROOM = 1.15
# Colour and marker together tell 12+ lines apart, also for colour-blind readers.
COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
MARKERS = ("o", "s", "^", "D", "v", "P")
STYLE: dict[Any, Any] = {
    "font.family": "sans-serif",
    "font.sans-serif": [FONT_FAMILY],
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.alpha": 0.3,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 10,
}


def legend_label(name: str) -> str:
    lines = textwrap.wrap(name, NAME_WIDTH, break_long_words=True) or ["?"]
    if len(lines) > NAME_LINES:
        lines = lines[:NAME_LINES]
        lines[-1] = lines[-1][: NAME_WIDTH - 1].rstrip() + "…"
    return "\n".join(lines)


def _day_label(day: date) -> str:
    return f"{day:%d.%m}"


def _title(data: ChartData) -> str:
    first, last = data.days[0], data.days[-1]
    return shared_texts(data.language).chart_title.format(
        first=_day_label(first), last=f"{last:%d.%m.%Y}", timezone=data.timezone
    )


def _weekends(ax: Axes, days: list[date]) -> None:
    for position, day in enumerate(days):
        if day.weekday() >= 5:
            ax.axvspan(position - 0.5, position + 0.5, color="#000000", alpha=0.05, lw=0)


def build_figure(data: ChartData) -> Figure:
    """The chart as a Figure (tests inspect its layout; :func:`render` saves it)."""
    texts = shared_texts(data.language)
    names = sorted(data.bots, key=lambda name: (name.casefold(), name))
    labels = [legend_label(name) for name in names]
    rows = [labels[row :: (len(labels) + 1) // 2] for row in range((len(labels) + 1) // 2)]
    legend_lines = sum(max(label.count("\n") + 1 for label in row) for row in rows)
    if data.empty:
        height = TITLE_INCHES + PANEL_INCHES
    else:
        height = TITLE_INCHES + 3 * PANEL_INCHES + LEGEND_LINE_INCHES * (legend_lines + 2)
    with matplotlib.rc_context(STYLE):
        figure = Figure(figsize=(WIDTH_INCHES, height), dpi=DPI, layout="constrained")
        figure.suptitle(_title(data), fontsize=12)
        if data.empty:
            ax = figure.add_subplot()
            ax.set_axis_off()
            ax.text(0.5, 0.5, texts.chart_empty, ha="center", va="center", fontsize=14)
            return figure
        axes = figure.subplots(3, 1, sharex=True)
        positions = list(range(len(data.days)))
        titles = (texts.chart_new_users, texts.chart_active_users, texts.chart_main_events)
        handles: list[Line2D] = []
        for ax, key, title in zip(axes, SERIES, titles, strict=True):
            ax.set_title(title, loc="left")
            _weekends(ax, data.days)
            for number, name in enumerate(names):
                values = getattr(data.bots[name], key)
                (line,) = ax.plot(
                    positions,
                    values,
                    color=COLORS[number % len(COLORS)],
                    marker=MARKERS[number % len(MARKERS)],
                    markersize=4,
                    linewidth=1.6,
                    label=labels[number],
                )
                if key == SERIES[0]:
                    handles.append(line)
            # Headroom above the highest point, and no tick label at the very top of a panel
            # (it would touch the "0" of the panel above).
            highest = max(max(getattr(bot, key)) for bot in data.bots.values())
            top = max(1, highest) * HEADROOM
            ticks = MaxNLocator(integer=True, nbins=5).tick_values(0, top)
            ax.yaxis.set_major_locator(FixedLocator([t for t in ticks if 0 <= t <= top * 0.9]))
            ax.set_ylim(bottom=0, top=top)
            ax.margins(x=0.02)
        axes[-1].set_xticks(positions, [_day_label(day) for day in data.days])
        axes[-1].set_xlim(-0.5, len(positions) - 0.5)
        figure.legend(
            handles=handles,
            loc="outside lower center",
            ncols=min(2, len(handles)),
            frameon=False,
            handlelength=2.5,
            columnspacing=2.0,
        )
        return figure


def render(data: ChartData) -> bytes:
    figure = build_figure(data)
    buffer = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        figure.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return buffer.getvalue()


def main(argv: list[str]) -> int:
    if argv[1:]:
        print("usage: python -m ecosystem_shared.chart < data.json > chart.png", file=sys.stderr)
        return 2
    data = ChartData.from_json(sys.stdin.read())
    sys.stdout.buffer.write(render(data))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
