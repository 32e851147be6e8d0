"""The printed table and the JSON: medians, ratios and the targets' verdicts."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Any

from benchmarks.config import (
    GENERATED,
    LABELS,
    MIB,
    PACKAGE,
    RATE_LIMIT_SECONDS,
    SCRAPE_SECONDS,
    TARGET_INGEST,
    TARGET_METRICS,
    TARGET_METRICS_RSS_MIB,
    TARGET_RSS,
    TARGET_THROUGHPUT,
    VARIANTS,
    Config,
)
from benchmarks.report_refs import refs_table, summarize_refs
from benchmarks.results import Results, median, ratio
from benchmarks.table import aligned, closing_lines, fmt, machine_lines, spread


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def summarize(res: Results) -> dict[str, Any]:
    """Medians, ratios and target verdicts (also the JSON's "summary")."""
    tput = {v: median([r.updates_per_s for r in res.runs(v)]) for v in VARIANTS}
    rss = {v: median([float(r.idle_rss_kb) for r in res.runs(v)]) for v in VARIANTS}
    cpu = {v: median([r.cpu_s / r.updates * 1e6 for r in res.runs(v)]) for v in VARIANTS}
    startup = {v: median([r.startup_s for r in res.runs(v)]) for v in VARIANTS}
    gen = [run for variant in GENERATED for run in res.runs(variant)]
    expected = sum(r.events_expected or 0 for r in gen)
    stored = sum(r.events_stored or 0 for r in gen)
    all_stored = bool(gen) and stored == expected
    per_row = median([r.rows_per_s for r in res.ingest("per-row")])
    batched = median([r.rows_per_s for r in res.ingest("batched")])
    t_ratio = ratio(tput["generated"], tput["bare"])
    r_ratio = ratio(rss["generated"], rss["bare"])
    i_ratio = ratio(batched, per_row)
    # Metrics on against off, round by round (the two ran one after the other).
    pairs = list(zip(res.runs("generated"), res.runs("metrics"), strict=False))
    m_ratio = median([on.updates_per_s / off.updates_per_s for off, on in pairs])
    m_rss = median([(on.idle_rss_kb - off.idle_rss_kb) / MIB for off, on in pairs])
    m_cpu = median([(on.cpu_s / on.updates) / (off.cpu_s / off.updates) for off, on in pairs])
    return {
        "updates_per_s": tput,
        "ratio_generated_bare": t_ratio,
        "ratio_seed_bare": ratio(tput["seed"], tput["bare"]),
        "cpu_us_per_update": cpu,
        "cpu_ratio_generated_bare": ratio(cpu["generated"], cpu["bare"]),
        "startup_s": startup,
        "idle_rss_kb": rss,
        "rss_ratio_generated_bare": r_ratio,
        "ratio_metrics_on_off": m_ratio,
        "rss_delta_metrics_mib": m_rss,
        "cpu_ratio_metrics_on_off": m_cpu,
        "scrapes": sum(r.scrapes for r in res.runs("metrics")),
        "db_lost": sum(r.db_lost for r in gen),
        "upserts_deferred": sum(r.upserts_deferred for r in gen),
        "log_warnings": {v: sum(r.log_warnings for r in res.runs(v)) for v in VARIANTS},
        "events_expected": expected,
        "events_stored": stored,
        "seed_events_stored": res.seed_events_stored,
        "ingest_rows_per_s": {"per-row": per_row, "batched": batched},
        "ingest_ratio": i_ratio,
        "render_median_s": median(res.render_seconds),
        "targets": {
            "throughput": verdict(
                None if t_ratio is None else t_ratio >= TARGET_THROUGHPUT and all_stored
            ),
            "idle_rss": verdict(None if r_ratio is None else r_ratio <= TARGET_RSS),
            "metrics_throughput": verdict(None if m_ratio is None else m_ratio >= TARGET_METRICS),
            "metrics_rss": verdict(None if m_rss is None else m_rss <= TARGET_METRICS_RSS_MIB),
            "ingest": verdict(None if i_ratio is None else i_ratio >= TARGET_INGEST),
            "events_stored": verdict(all_stored if gen else None),
        },
    }


def table(res: Results, summary: dict[str, Any], config: Config) -> str:
    m = res.machine
    rows: list[tuple[str, str, str, str, str]] = []

    def add(name: str, value: str, rng: str = "", target: str = "", result: str = "") -> None:
        rows.append((name, value, rng, target, result))

    add(
        "Render one bot (copier copy)",
        fmt(summary["render_median_s"], ".2f", " s"),
        spread(res.render_seconds, ".2f"),
    )
    for v in VARIANTS:
        values = [r.updates_per_s for r in res.runs(v)]
        add(
            f"Throughput {LABELS[v]}",
            fmt(summary["updates_per_s"][v], ".0f", " upd/s"),
            spread(values, ".0f"),
        )
    targets = summary["targets"]
    add(
        "  generated / bare",
        fmt(summary["ratio_generated_bare"], ".2f", "x"),
        "",
        f">= {TARGET_THROUGHPUT}x, all stored",
        targets["throughput"],
    )
    add("  seed / bare", fmt(summary["ratio_seed_bare"], ".2f", "x"))
    add(
        "  metrics on / off (same round)",
        fmt(summary["ratio_metrics_on_off"], ".2f", "x"),
        f"{summary['scrapes']} scrapes",
        f">= {TARGET_METRICS}x",
        targets["metrics_throughput"],
    )
    add(
        "Events stored (generated, +warm-ups)",
        f"{summary['events_stored']} / {summary['events_expected']}",
        "",
        "all",
        targets["events_stored"],
    )
    gen = res.runs("generated")
    add(
        "  database outages seen during load",
        f"{summary['db_lost']} in {len(gen)} run(s)",
        spread([r.db_lost for r in gen], "d"),
    )
    add(
        "  user upserts deferred to buffer",
        str(summary["upserts_deferred"]),
        spread([r.upserts_deferred for r in gen], "d"),
    )
    seed = res.runs("seed")
    if res.seed_events_stored is not None:
        add(
            "Events stored (seed, info)",
            f"{res.seed_events_stored} / {sum(r.updates + 1 for r in seed)}",
        )
    for v in VARIANTS:
        add(
            f"Bot CPU per update, {LABELS[v]}",
            fmt(summary["cpu_us_per_update"][v], ".0f", " us"),
            spread([r.cpu_s / r.updates * 1e6 for r in res.runs(v)], ".0f"),
        )
    add("  generated / bare", fmt(summary["cpu_ratio_generated_bare"], ".2f", "x"))
    add("  metrics on / off (same round)", fmt(summary["cpu_ratio_metrics_on_off"], ".2f", "x"))
    for v in VARIANTS:
        add(
            f"Startup to polling, {LABELS[v]}",
            fmt(summary["startup_s"][v], ".2f", " s"),
            spread([r.startup_s for r in res.runs(v)], ".2f"),
        )
    for v in VARIANTS:
        rss = summary["idle_rss_kb"][v]
        add(
            f"Idle RSS {LABELS[v]}",
            fmt(rss / MIB if rss else None, ".1f", " MiB"),
            spread([r.idle_rss_kb / MIB for r in res.runs(v)], ".1f"),
        )
    add(
        "  generated / bare",
        fmt(summary["rss_ratio_generated_bare"], ".2f", "x"),
        "",
        f"<= {TARGET_RSS}x",
        targets["idle_rss"],
    )
    add(
        "  metrics on - off (same round)",
        fmt(summary["rss_delta_metrics_mib"], "+.1f", " MiB"),
        "",
        f"<= +{TARGET_METRICS_RSS_MIB:g} MiB",
        targets["metrics_rss"],
    )
    ingest = summary["ingest_rows_per_s"]
    add(
        "Ingest per-row INSERT (seed way)",
        fmt(ingest["per-row"], ".0f", " rows/s"),
        spread([r.rows_per_s for r in res.ingest("per-row")], ".0f"),
    )
    add(
        "Ingest batched (Analytics.flush)",
        fmt(ingest["batched"], ".0f", " rows/s"),
        spread([r.rows_per_s for r in res.ingest("batched")], ".0f"),
    )
    add(
        "  batched / per-row",
        fmt(summary["ingest_ratio"], ".1f", "x"),
        "",
        f">= {TARGET_INGEST:.0f}x",
        targets["ingest"],
    )
    lim = res.limiter
    if lim:
        users = f"{lim['users']:,}"
        add(f"Rate limiter RSS before {users} users", f"{lim['rss_before_kb'] / MIB:.1f} MiB")
        add(
            f"Rate limiter RSS after {users} users",
            f"{lim['rss_after_kb'] / MIB:.1f} MiB",
            f"peak {lim['peak_rss_kb'] / MIB:.1f}",
        )
        add("  delta", f"{lim['rss_delta_kb'] / MIB:+.1f} MiB", f"{lim['entries_kept']:,} kept")
        add("  time per check", f"{lim['ns_per_check']:.0f} ns")

    headers = ("Figure", "Median", "Range", "Target", "Result")
    out = [
        *machine_lines(res, config),
        f"Template: {m.get('template_commit')}",
        f"Throughput: {config.rounds} interleaved round(s) of bare, seed, generated, generated"
        f" with metrics on (/metrics scraped every {SCRAPE_SECONDS:g} s; the last two swap"
        " places every other round); each a fresh"
        f" process, warm-up /start, {config.idle_seconds:g} s idle (RSS read), then"
        f" {config.updates} /start from {config.users} users, timed from push to the"
        f" {config.updates}-th reply.",
        f"Generated bot: python -m {PACKAGE}, all middlewares, DATABASE_URL set,"
        f" ENABLE_ANALYTICS=true, RATE_LIMIT_SECONDS={RATE_LIMIT_SECONDS};"
        " ANALYTICS_CHANNEL_ID unset, so every variant makes the same API calls"
        " (one sendMessage per /start, no channel notifications).",
        f"Ingest: {config.ingest_rounds} interleaved round(s) of {config.ingest_rows} rows each"
        " way. Medians; Range is min-max over rounds.",
        "",
        *aligned((headers, *rows)),
        "",
        *closing_lines(res),
    ]
    return "\n".join(out)


def report(res: Results, config: Config) -> None:
    res.machine["load_average_end"] = list(os.getloadavg())
    if config.refs:
        summary = summarize_refs(res, config.refs)
        print(refs_table(res, summary, config), flush=True)
    else:
        summary = summarize(res)
        print(table(res, summary, config), flush=True)
    if config.json_path is not None:
        payload = {
            "ok": not res.problems,
            "machine": res.machine,
            "config": res.config,
            "summary": summary,
            "targets": {
                "throughput_ratio_min": TARGET_THROUGHPUT,
                "idle_rss_ratio_max": TARGET_RSS,
                "ingest_ratio_min": TARGET_INGEST,
            },
            "render_seconds": res.render_seconds,
            "bot_runs": [asdict(run) for run in res.bot_runs],
            "ingest_runs": [asdict(run) for run in res.ingest_runs],
            "rate_limiter": res.limiter,
            "notes": res.notes,
            "problems": res.problems,
        }
        if config.refs:
            payload |= {"refs": res.refs, "ref_render_seconds": res.ref_render_seconds}
        config.json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"JSON written to {config.json_path}")
