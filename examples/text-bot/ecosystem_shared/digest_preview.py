"""``python -m ecosystem_shared.digest --preview [--day YYYY-MM-DD] [--chart PATH]``: the digest
that would be sent for a day, printed, with its chart written to PATH; nothing is sent.

``--day`` is the run date, as in ``shared.digest_runs`` (default: today in the digest's zone):
the digest covers the local day before it, read from the rollups where they exist and from the
events otherwise. Nothing is written to the database either.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import pytz

from ecosystem_shared.cli_support import add_common_options, checked_common, iso_day
from ecosystem_shared.digest_chart import ChartError, run_chart_process
from ecosystem_shared.notifications import format_digest
from ecosystem_shared.stats import query_chart_data, query_day_stats

_TAG = re.compile(r"<[^>]*>")
CHART_TIMEOUT = 120.0


async def preview(
    dsn: str, day: date, timezone: str, language: str, chart: Path | None
) -> tuple[list[str], str | None]:
    """The digest's messages (plain text) and what became of the chart."""
    conn = await asyncpg.connect(dsn)
    try:
        stats = await query_day_stats(conn, day - timedelta(days=1), timezone)
        data = await query_chart_data(conn, stats.period_end, timezone, language=language)
    finally:
        await conn.close()
    texts = [html.unescape(_TAG.sub("", chunk)) for chunk in format_digest(stats, language)]
    if chart is None:
        return texts, None
    if data.empty:
        return texts, "no chart: no data in its 14 days"
    png = await run_chart_process(data, timeout=CHART_TIMEOUT)
    await asyncio.to_thread(chart.write_bytes, png)
    return texts, f"chart: {chart} ({len(png)} bytes)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ecosystem_shared.digest")
    parser.add_argument(
        "--preview", action="store_true", required=True, help="print it, send nothing"
    )
    parser.add_argument(
        "--day", type=iso_day, metavar="YYYY-MM-DD", help="the run date (default: today there)"
    )
    parser.add_argument("--chart", type=Path, metavar="PATH", help="write the chart PNG here")
    parser.add_argument("--language", choices=("ru", "en"),
                        default=os.environ.get("LANGUAGE") or "ru")  # fmt: skip
    add_common_options(parser)
    args = parser.parse_args(argv)
    dsn, timezone = checked_common(parser, args)
    day = args.day or datetime.now(UTC).astimezone(pytz.timezone(timezone)).date()
    if args.chart is not None and not args.chart.parent.is_dir():
        parser.error(f"--chart: no directory {args.chart.parent}")
    try:
        texts, chart = asyncio.run(preview(dsn, day, timezone, args.language, args.chart))
    except (OSError, asyncpg.PostgresError, ChartError) as error:
        print(f"preview failed: {error}", file=sys.stderr)
        return 1
    print("\n\n".join(texts))
    if chart is not None:
        print(f"\n[{chart}]")
    return 0
