"""The host benchmark's figures: each mode's result, medians over rounds, and the table."""

from __future__ import annotations

import statistics
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from devkit.interpreters import IMMORTAL_VERSIONS, version_of

MIB = 1024.0
TARGET_PSS_MIB = 400.0
TARGET_PSS_RATIO = 0.3
TARGET_THROUGHPUT = 0.9
TARGET_RESTART_S = 2.0


@dataclass
class ModeResult:
    mode: str
    start_s: float = 0.0
    per_bot_updates_s: dict[str, float] = field(default_factory=dict)
    pss_kib: dict[str, int] = field(default_factory=dict)  # process label -> PSS
    private_dirty_kib: dict[str, int] = field(default_factory=dict)
    idle_pss_kib: dict[str, int] = field(default_factory=dict)  # after start, before traffic
    restart_s: float = 0.0
    events_expected: int = 0
    events_stored: int = 0

    @property
    def total_pss_mib(self) -> float:
        return sum(self.pss_kib.values()) / MIB

    @property
    def median_updates_s(self) -> float:
        return statistics.median(self.per_bot_updates_s.values())


def interpreter(python: str) -> str:
    """``Python 3.12.1 (/path)``, and a word when the host cannot make its objects immortal."""
    version = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    described = f"Python {version} ({python})"
    if version_of(python) not in IMMORTAL_VERSIONS:
        described += "; no immortal objects on it (the host image runs 3.12): try --python 3.12"
    return described


def merged(results: Sequence[ModeResult], mode: str) -> ModeResult:
    """Medians over the rounds of one mode (memory: the round with the median total PSS)."""
    runs = [r for r in results if r.mode == mode]
    if not runs:
        return ModeResult(mode)
    by_pss = sorted(runs, key=lambda r: r.total_pss_mib)[len(runs) // 2]
    slugs = runs[0].per_bot_updates_s
    return ModeResult(
        mode,
        start_s=statistics.median(r.start_s for r in runs),
        per_bot_updates_s={
            slug: statistics.median(r.per_bot_updates_s[slug] for r in runs) for slug in slugs
        },
        pss_kib=by_pss.pss_kib,
        private_dirty_kib=by_pss.private_dirty_kib,
        restart_s=statistics.median(r.restart_s for r in runs),
        events_expected=sum(r.events_expected for r in runs),
        events_stored=sum(r.events_stored for r in runs),
    )


def table(separate: ModeResult, host: ModeResult, bots: int, users: int, python: str) -> str:
    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b else "-"

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    speed_ratio = statistics.median(
        host.per_bot_updates_s[slug] / separate.per_bot_updates_s[slug]
        for slug in host.per_bot_updates_s
    )
    host_bots = [v for k, v in host.pss_kib.items() if not k.startswith(("host", "other"))]
    rows = [
        (
            "Total PSS after traffic",
            f"{separate.total_pss_mib:.0f} MiB",
            f"{host.total_pss_mib:.0f} MiB",
            ratio(host.total_pss_mib, separate.total_pss_mib),
            f"<= {TARGET_PSS_MIB:.0f} MiB and <= {TARGET_PSS_RATIO}x: "
            + verdict(
                host.total_pss_mib <= TARGET_PSS_MIB
                and host.total_pss_mib <= TARGET_PSS_RATIO * separate.total_pss_mib
            ),
        ),
        (
            "PSS per bot (host: child; parent apart)",
            f"{separate.total_pss_mib / bots:.1f} MiB",
            f"{statistics.median(host_bots) / MIB:.1f} MiB + parent "
            f"{host.pss_kib.get('host parent', 0) / MIB:.1f} MiB",
            "",
            "",
        ),
        (
            "Start until every bot polls",
            f"{separate.start_s:.1f} s",
            f"{host.start_s:.1f} s",
            ratio(host.start_s, separate.start_s),
            "",
        ),
        (
            f"/start throughput per bot (median of {bots}; ratio: median of per-bot ratios)",
            f"{separate.median_updates_s:.0f} upd/s",
            f"{host.median_updates_s:.0f} upd/s",
            f"{speed_ratio:.2f}x",
            f">= {TARGET_THROUGHPUT}x: " + verdict(speed_ratio >= TARGET_THROUGHPUT),
        ),
        (
            "Killed bot answers again",
            f"{separate.restart_s:.2f} s",
            f"{host.restart_s:.2f} s",
            "",
            f"host <= {TARGET_RESTART_S:.0f} s: " + verdict(host.restart_s <= TARGET_RESTART_S),
        ),
        (
            "user_start events stored",
            f"{separate.events_stored}/{separate.events_expected}",
            f"{host.events_stored}/{host.events_expected}",
            "",
            "all: "
            + verdict(
                host.events_stored == host.events_expected
                and separate.events_stored == separate.events_expected
            ),
        ),
    ]
    header = ("Figure", f"{bots} processes", "host", "host/separate", "Target")
    lines = [
        f"{bots} bots, /start from {users} distinct users each, {python}",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
