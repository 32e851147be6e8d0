"""Child process of ``run.py``: memory of the generated bot's RateLimiter at many distinct users.

Run with the rendered bot's directory on ``PYTHONPATH``::

    python benchmarks/limiter_memory.py 1000000 3.0

Prints one JSON object: RSS (VmRSS) before and after ``users`` distinct-user checks, the peak
(VmHWM), how many entries the limiter kept and the time per check.
"""

from __future__ import annotations

import gc
import importlib
import json
import sys
import time
from typing import Any

# Telegram user ids are large (beyond the small-int cache), like real ones.
FIRST_ID = 5_000_000_000


def proc_status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(users: int, interval: float) -> dict[str, Any]:
    module = importlib.import_module("ecosystem_shared.middlewares.rate_limit")
    limiter = module.RateLimiter(interval)  # the middleware's defaults (max_keys)
    limiter.check(FIRST_ID - 1)  # first call outside the measurement
    gc.collect()
    before = proc_status_kb("VmRSS")
    started = time.perf_counter()
    for user_id in range(FIRST_ID, FIRST_ID + users):
        limiter.check(user_id)
    elapsed = time.perf_counter() - started
    gc.collect()
    after = proc_status_kb("VmRSS")
    return {
        "users": users,
        "interval_s": interval,
        "max_keys": int(limiter.max_keys),
        "entries_kept": len(limiter),
        "rss_before_kb": before,
        "rss_after_kb": after,
        "rss_delta_kb": after - before,
        "peak_rss_kb": proc_status_kb("VmHWM"),
        "ns_per_check": elapsed / users * 1e9,
    }


def main(argv: list[str]) -> int:
    users = int(argv[1]) if len(argv) > 1 else 1_000_000
    interval = float(argv[2]) if len(argv) > 2 else 3.0
    print(json.dumps(measure(users, interval)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
