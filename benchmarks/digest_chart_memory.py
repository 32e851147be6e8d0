"""Benchmark: a bot's resident memory after drawing the digest chart, subprocess vs in-process.

    python benchmarks/digest_chart_memory.py              # 3 interleaved rounds, ~1 min
    python benchmarks/digest_chart_memory.py --rounds 5 --json out.json

Each round starts two fresh Python processes that import what a bot imports (aiogram and the
template's ``ecosystem_shared`` runtime, straight from ``template/``), read VmRSS, then draw the
chart of the README example (``scripts/render_digest_example.py``'s data) twice:

- **subprocess** (what the template does): ``digest_chart.run_chart_process``, i.e.
  ``python -m ecosystem_shared.chart`` per chart;
- **in-process** (what it avoids): ``ecosystem_shared.chart.render`` in the bot's own process.

and read VmRSS again after a ``gc.collect()``. Rounds alternate the order of the two variants.
Prints the median growth of each, their ratio and the median seconds per chart. No database and
no Telegram needed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "template"
sys.path.insert(0, str(REPO_ROOT / "scripts"))

from render_digest_example import example_data, run_in_template  # noqa: E402 - path above

VARIANTS = ("subprocess", "in-process")
CHARTS_PER_ROUND = 2
LIMIT_MIB = 5.0  # the bound on the subprocess variant

CHILD = r"""
import asyncio, gc, json, sys, time
import aiogram  # what every bot has loaded before its first digest
import ecosystem_shared.runtime
from ecosystem_shared.stats import ChartData

def rss_kib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

data = ChartData.from_json(sys.stdin.read())
variant, charts = sys.argv[1], int(sys.argv[2])
gc.collect()
before = rss_kib()
started = time.perf_counter()
for _ in range(charts):
    if variant == "subprocess":
        from ecosystem_shared.digest_chart import run_chart_process
        png = asyncio.run(run_chart_process(data, timeout=120))
    else:
        from ecosystem_shared.chart import render
        png = render(data)
    assert png.startswith(b"\x89PNG"), "not a PNG"
seconds = (time.perf_counter() - started) / charts
gc.collect()
print(json.dumps({"before": before, "after": rss_kib(), "seconds": seconds,
                  "matplotlib": "matplotlib" in sys.modules}))
"""


def measure(variant: str, payload: str) -> dict[str, Any]:
    args = ["-c", CHILD, variant, str(CHARTS_PER_ROUND)]
    output = run_in_template(args, payload.encode(), timeout=600).decode()
    row: dict[str, Any] = json.loads(output.splitlines()[-1])
    row["growth_mib"] = (row["after"] - row["before"]) / 1024
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write every round here")
    args = parser.parse_args()
    payload = example_data().to_json()
    rounds: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    for number in range(args.rounds):
        order = VARIANTS if number % 2 == 0 else VARIANTS[::-1]
        for variant in order:
            rounds[variant].append(measure(variant, payload))
    growth = {v: statistics.median(r["growth_mib"] for r in rounds[v]) for v in VARIANTS}
    seconds = {v: statistics.median(r["seconds"] for r in rounds[v]) for v in VARIANTS}
    runs = f"{CHARTS_PER_ROUND} charts per process, {args.rounds} rounds"
    print(f"Digest chart of the README example, {runs}")
    print(f"{'variant':<12} {'RSS growth (MiB)':>17} {'s per chart':>12} {'matplotlib loaded':>18}")
    for variant in VARIANTS:
        loaded = any(r["matplotlib"] for r in rounds[variant])
        print(f"{variant:<12} {growth[variant]:>17.1f} {seconds[variant]:>12.2f} {loaded!s:>18}")
    ratio = growth["in-process"] / max(growth["subprocess"], 0.1)
    verdict = "PASS" if growth["subprocess"] < LIMIT_MIB else "MISS"
    print(f"in-process / subprocess RSS growth: {ratio:.0f}x (growth floored at 0.1 MiB)")
    print(f"subprocess growth < {LIMIT_MIB:g} MiB: {verdict}")
    slower = seconds["subprocess"] / seconds["in-process"]
    print(f"time per chart, subprocess / in-process: {slower:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"rounds": rounds, "growth_mib": growth}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
