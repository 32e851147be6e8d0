"""Render docs/digest-example.png: the digest chart of the examples' four bots.

    python scripts/render_digest_example.py            # write docs/digest-example.png
    python scripts/render_digest_example.py --check    # exit 1 if the committed PNG is stale

The bots are the ones examples/answers/*.yml name (bot_name of every bot example); their 14 days
of activity are synthesised deterministically (ecosystem_shared.testing.activity, fixed seed and
end date), in the digest's default time zone and the examples' main language. The chart is drawn
by the template's own ``python -m ecosystem_shared.chart`` (run from template/), as a bot does.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytz
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = REPO_ROOT / "template"
ANSWERS = REPO_ROOT / "examples" / "answers"
OUTPUT = REPO_ROOT / "docs" / "digest-example.png"
sys.path.insert(0, str(TEMPLATE))
# The template's own modules (not a package of this repository: imported, not type-checked here).
stats = importlib.import_module("ecosystem_shared.stats")
activity = importlib.import_module("ecosystem_shared.testing.activity")

TIMEZONE = "Europe/Moscow"  # copier.yml's digest_timezone default
END = pytz.timezone(TIMEZONE).localize(datetime(2026, 12, 1, 9, 0))  # a digest at 09:00
SEED = 2026


def example_bots() -> tuple[list[str], str]:
    """Bot names of the bot examples (sorted) and their most common language."""
    answers = [yaml.safe_load(path.read_text()) for path in sorted(ANSWERS.glob("*.yml"))]
    bots = [a for a in answers if isinstance(a, dict) and "bot_name" in a]
    if not bots:
        raise SystemExit(f"no bot_name in {ANSWERS}/*.yml")
    languages = Counter(str(a.get("language", "ru")) for a in bots)
    return sorted(str(a["bot_name"]) for a in bots), languages.most_common(1)[0][0]


def example_data() -> Any:
    """The :class:`ecosystem_shared.stats.ChartData` of the example."""
    names, language = example_bots()
    days = stats.chart_days(END, TIMEZONE)
    series = activity.synthetic_series(names, days, seed=SEED)
    return stats.ChartData(TIMEZONE, END, days, language, series)


def run_in_template(args: list[str], payload: bytes, *, timeout: float) -> bytes:
    """``python <args>`` with template/ as the project (stdin ``payload``); its stdout."""
    result = subprocess.run(
        [sys.executable, *args],
        input=payload,
        capture_output=True,
        cwd=TEMPLATE,
        env={"PYTHONPATH": str(TEMPLATE), "MPLBACKEND": "Agg", "PATH": "/usr/bin:/bin"}
        | {key: value for key, value in os.environ.items() if key in ("HOME", "MPLCONFIGDIR")},
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"python {args[0]} failed:\n{result.stderr.decode(errors='replace')}")
    return bytes(result.stdout)


def render(data: Any) -> bytes:
    """The chart, drawn the way a bot has it drawn: ``python -m ecosystem_shared.chart``."""
    return run_in_template(["-m", "ecosystem_shared.chart"], data.to_json().encode(), timeout=300)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the PNG is stale")
    args = parser.parse_args()
    png = render(example_data())
    if args.check:
        current = OUTPUT.read_bytes() if OUTPUT.exists() else b""
        if current != png:
            print(f"{OUTPUT.relative_to(REPO_ROOT)} is stale: run {Path(__file__).name}")
            return 1
        return 0
    OUTPUT.write_bytes(png)
    print(f"wrote {OUTPUT.relative_to(REPO_ROOT)} ({len(png)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
