"""The plumbing of the benchmarks' ``--refs`` (run.py, test_loop.py): refs resolved or refused
before anything runs, the order reversing every round, ratios taken round by round. Fast: no
render, no bot; the benchmarks themselves are run by hand (benchmarks/README.md)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from benchmarks import run
from benchmarks.config import MIB, is_generated, parse_args, ref_variant
from benchmarks.host_refs_report import refs_summary
from benchmarks.host_refs_report import refs_table as host_refs_table
from benchmarks.host_report import ModeResult
from benchmarks.refs import alternating, compared, ratios_to_last, ref_dir, resolve
from benchmarks.report_refs import refs_table, summarize_refs
from benchmarks.results import BotRun, Results
from benchmarks.throughput import metrics_order
from tests.helpers import REPO_ROOT

# The last release before HEAD's: it stays in the history.
RELEASE_0_2_0 = "104b905"


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_refs_resolve_to_their_commits() -> None:
    commits = resolve([RELEASE_0_2_0, "HEAD"])
    assert list(commits) == [RELEASE_0_2_0, "HEAD"]  # the order given: the last is the baseline
    assert commits == {
        RELEASE_0_2_0: git("rev-parse", f"{RELEASE_0_2_0}^{{commit}}"),
        "HEAD": git("rev-parse", "HEAD"),
    }
    assert commits[RELEASE_0_2_0].startswith(RELEASE_0_2_0)
    assert len(commits[RELEASE_0_2_0]) == 40


@pytest.mark.parametrize(
    ("refs", "message"),
    [
        (["HEAD", "no-such-ref-anywhere"], "'no-such-ref-anywhere' is not a commit"),
        (["HEAD", "HEAD"], "names a ref twice"),
    ],
)
def test_bad_refs_stop_the_run_before_it_starts(refs: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        resolve(refs)
    with pytest.raises(SystemExit, match=message):  # before any render or server
        run.main(["--refs", *refs, "--quick"])


def test_each_ref_renders_into_its_own_directory(tmp_path: Path) -> None:
    dirs = {ref_dir(tmp_path, ref) for ref in ("HEAD", "HEAD^", "v0.2.0", "104b905")}
    assert len(dirs) == 4
    assert all(d.parent == tmp_path and "^" not in d.name for d in dirs)


def test_order_reverses_every_round() -> None:
    names = ["bare", ref_variant("104b905"), ref_variant("HEAD")]
    orders = [alternating(names, n) for n in range(4)]
    assert orders[0] == orders[2] == names
    assert orders[1] == orders[3] == list(reversed(names))
    assert names == ["bare", "generated@104b905", "generated@HEAD"]  # not reversed in place


def median_ratios(per_round: dict[str, list[float]]) -> dict[str, float | None]:
    return {ref: found["ratio_to_last"] for ref, found in compared(per_round).items()}


def test_ratios_are_taken_round_by_round() -> None:
    # The machine's speed drifts between rounds: neighbours in one round are compared, so the
    # median of the per-round ratios is 1.1x where the ratio of the medians (105/100) is not.
    per_round = {"old": [220.0, 55.0, 105.0], "HEAD": [200.0, 50.0, 100.0]}
    assert ratios_to_last(per_round)["old"] == pytest.approx([1.1, 1.1, 1.05])
    assert median_ratios(per_round) == pytest.approx({"old": 1.1, "HEAD": 1.0})
    # A run cut short: only the rounds both refs ran count; none at all gives no ratio.
    assert ratios_to_last({"old": [3.0, 9.0], "HEAD": [2.0]}) == {"old": [1.5], "HEAD": [1.0]}
    assert median_ratios({"old": [3.0], "HEAD": []}) == {"old": None, "HEAD": None}


def test_refs_option_parsed_and_absent_by_default() -> None:
    assert parse_args(["--quick"]).refs == ()
    config = parse_args(["--quick", "--refs", RELEASE_0_2_0, "HEAD"])
    assert config.refs == (RELEASE_0_2_0, "HEAD")
    assert config.rounds == 1 and config.updates == 1000  # --quick still applies


def bot_run(variant: str, round_no: int, updates_per_s: float, rss_mib: float) -> BotRun:
    return BotRun(
        variant=variant,
        round=round_no,
        startup_s=2.0,
        idle_rss_kb=int(rss_mib * MIB),
        updates=1000,
        seconds=1000 / updates_per_s,
        updates_per_s=updates_per_s,
        cpu_s=1000 / updates_per_s / 2,
        rate_limited=0,
        exit_code=0,
        events_expected=1001,
        events_stored=1001 if variant.endswith("HEAD") or round_no == 1 else 1000,
    )


def test_summary_and_table_of_two_refs() -> None:
    refs = (RELEASE_0_2_0, "HEAD")
    res = Results(refs={RELEASE_0_2_0: "1" * 40, "HEAD": "2" * 40})
    res.ref_render_seconds = {RELEASE_0_2_0: [1.0, 3.0], "HEAD": [2.0]}
    speeds = {"bare": [600.0, 300.0], RELEASE_0_2_0: [440.0, 180.0], "HEAD": [400.0, 200.0]}
    for round_no in (1, 2):
        res.bot_runs.append(bot_run("bare", round_no, speeds["bare"][round_no - 1], 160.0))
        for ref in refs:
            rss = 180.0 if ref == "HEAD" else 171.0
            res.bot_runs.append(bot_run(ref_variant(ref), round_no, speeds[ref][round_no - 1], rss))
    summary = summarize_refs(res, refs)
    old = summary["refs"][RELEASE_0_2_0]
    assert old["updates_per_s"]["ratios"] == pytest.approx([1.1, 0.9])
    assert old["updates_per_s"]["ratio_to_last"] == pytest.approx(1.0)
    assert old["updates_per_s"]["ratio_to_bare"] == pytest.approx(310 / 450)
    assert old["cpu_us_per_update"]["ratio_to_last"] == pytest.approx((1 / 1.1 + 1 / 0.9) / 2)
    assert old["idle_rss_mib"]["ratio_to_last"] == pytest.approx(0.95)
    assert old["render_median_s"] == 2.0
    assert (old["events_stored"], old["events_expected"]) == (2001, 2002)
    assert summary["refs"]["HEAD"]["updates_per_s"]["ratio_to_last"] == 1.0
    assert summary["bare"]["updates_per_s"]["median"] == 450.0

    config = parse_args(["--refs", *refs, "--rounds", "2"])
    text = refs_table(res, summary, config)
    assert f"{RELEASE_0_2_0} = {'1' * 40}" in text
    assert "  / HEAD, per round" in text
    assert "0.95x; 0.95-0.95" in text  # idle RSS of the old ref against HEAD's
    assert "2001 / 2002" in text


def host_run(total_mib: float, child_dirty_mib: list[float], updates_s: float) -> ModeResult:
    result = ModeResult("host", start_s=3.0, restart_s=1.2, events_expected=30, events_stored=30)
    result.per_bot_updates_s = {"bench-01": updates_s, "bench-02": updates_s * 2}
    result.pss_kib = {"host parent": int(total_mib * MIB / 2), "bench-01": int(total_mib * MIB / 2)}
    dirty = {f"bench-{n + 1:02d}": int(mib * MIB) for n, mib in enumerate(child_dirty_mib)}
    result.private_dirty_kib = {"host parent": 99 * 1024, "other 123": 1024} | dirty
    return result


def test_host_refs_summary_compares_round_by_round() -> None:
    results = {
        RELEASE_0_2_0: [host_run(330.0, [15.0, 17.0], 1000.0), host_run(300.0, [16.0], 900.0)],
        "HEAD": [host_run(300.0, [15.0], 1000.0), host_run(300.0, [15.0, 16.0, 20.0], 1000.0)],
    }
    summary = refs_summary(results)
    pss = summary["total_pss_mib"][RELEASE_0_2_0]
    assert pss["ratios"] == pytest.approx([1.1, 1.0])
    assert pss["ratio_to_last"] == pytest.approx(1.05)
    # Only the bots' children count, not the parent or another child of the host.
    dirty = summary["child_private_dirty_mib"]
    assert dirty[RELEASE_0_2_0]["rounds"] == pytest.approx([16.0, 16.0])
    assert dirty["HEAD"]["rounds"] == pytest.approx([15.0, 16.0])
    assert summary["updates_per_s"][RELEASE_0_2_0]["median"] == pytest.approx(1425.0)
    assert summary["events"] == {RELEASE_0_2_0: [60, 60], "HEAD": [60, 60]}
    commits = {RELEASE_0_2_0: "1" * 40, "HEAD": "2" * 40}
    text = host_refs_table(summary, commits, bots=2, users=10, rounds=2, python="Python 3.12")
    assert "1.05x; 1.00-1.10" in text
    assert "60 / 60" in text


def test_without_refs_the_variants_keep_their_order() -> None:
    """run.py's own rounds as before --refs: metrics off and on swap places every other round."""
    assert metrics_order(0) == metrics_order(2) == ["bare", "seed", "generated", "metrics"]
    assert metrics_order(1) == ["bare", "seed", "metrics", "generated"]
    # Each ref's bot has its events counted and its analytics counters read, as "generated".
    assert is_generated("generated") and is_generated("metrics")
    assert is_generated(ref_variant(RELEASE_0_2_0))
    assert not is_generated("bare") and not is_generated("seed")
