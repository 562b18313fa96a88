"""The benchmark's document (JSON) and table: each profile's figures, ratios, the seed's original figures.

The seed is the original bot's optimization notes, whose baseline table this benchmark measures:
dashboard refresh 2.1 s on average, 900-1200 persistence saves an hour for 15 positions, cache hit
rate unknown, memory and CPU "baseline measurement needed", monitoring fixed at every 5 s.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .outcome import PNL_TOLERANCE_BPS, TradeOutcome, first_difference, max_pnl_difference
from .workload import PROFILES, Workload

ORIGINAL: dict[str, Any] = {
    "dashboard_refresh_ms_mean": 2100.0,
    "persistence_saves_per_hour": [900, 1200],
    "persistence_note": (
        "15 positions; its own estimate (10-15 saves a minute per position) gives 9,000-13,500"
    ),
    "cache_hit_rate": None,
    "cache_note": "unknown",
    "peak_rss_mb": "baseline measurement needed",
    "cpu_seconds": "baseline measurement needed",
    "monitor_interval_s": 5.0,
}
"""The seed's figures, as its notes give them (None: not known)."""

RATIOS: dict[str, Callable[[Mapping[str, Any]], float | None]] = {
    "dashboard_refresh_p50": lambda f: f["dashboard_refresh_ms"]["p50"],
    "dashboard_refresh_mean": lambda f: f["dashboard_refresh_ms"]["mean"],
    "persistence_writes": lambda f: f["persistence_writes_per_hour"],
    "persistence_fsyncs": lambda f: f["persistence_fsyncs_per_hour"],
    "api_calls": lambda f: f["api_calls_per_hour"],
    "monitor_checks": lambda f: f["monitor_checks_per_hour"],
    "reaction_p99": lambda f: f["reaction_ms"]["p99"],
}
"""Each ratio is the baseline's figure over the optimized one's (how many times the baseline's is)."""


def ratio(baseline: float | None, optimized: float | None) -> float | None:
    """``baseline / optimized`` to 2 decimals; None when either is missing or the optimized one is 0."""
    if baseline is None or optimized is None or optimized == 0:
        return None
    return round(baseline / optimized, 2)


def comparison(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Whether the profiles closed the same trades; the first difference, in words, if not."""
    if not all(p in runs for p in PROFILES):
        return {"same_trades": None, "first_difference": None, "max_pnl_difference": None}
    trades = [[TradeOutcome.from_dict(row) for row in runs[p]["trades"]] for p in PROFILES]
    difference = first_difference(PROFILES, trades[0], trades[1])
    return {
        "same_trades": difference is None,
        "first_difference": difference,
        "max_pnl_difference": max_pnl_difference(trades[0], trades[1]),
        "pnl_tolerance_bps": PNL_TOLERANCE_BPS,
    }


def document(
    workload: Workload, cpu: str, runs: Mapping[str, Mapping[str, Any]], wall_s: Mapping[str, float]
) -> dict[str, Any]:
    """The JSON document: the workload, each profile's figures (None when not run), the ratios, the
    seed's original figures and the comparison of the trades."""
    both = all(p in runs for p in PROFILES)
    return {
        "workload": {
            "positions": workload.positions,
            "minutes": workload.minutes,
            "seed": workload.seed,
            "cpu": cpu,
            "profiles": [p for p in PROFILES if p in runs],
            "sim_latency": "realistic",
            "mirror": workload.mirror,
            "volatility": workload.volatility,
        },
        **{p: (dict(runs[p]) if p in runs else None) for p in PROFILES},
        "ratios": {
            name: ratio(pick(runs["baseline"]), pick(runs["optimized"])) if both else None
            for name, pick in RATIOS.items()
        },
        "original": ORIGINAL,
        "comparison": comparison(runs),
        "wall_seconds": {p: round(s, 1) for p, s in wall_s.items()},
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def _rate(value: Any) -> str:
    return "-" if value is None else f"{value:.1%}"


Row = tuple[str, Callable[[Mapping[str, Any]], Any], str, Callable[[Any], str]]


def _entry(section: str, key: str) -> Callable[[Mapping[str, Any]], Any]:
    """Read ``figures[section][key]``, 0 when that profile has no such entry (an endpoint it never called)."""
    return lambda figures: figures[section].get(key, 0.0)


def _rows(doc: Mapping[str, Any]) -> list[Row]:
    """The table's rows: label, how to read the figure, the seed's original, how to show it."""
    positions = doc["workload"]["positions"]
    per_position = 3600.0 / ORIGINAL["monitor_interval_s"]
    rows: list[Row] = [
        ("dashboard refresh mean (sim ms)", lambda f: f["dashboard_refresh_ms"]["mean"], "2,100", _fmt),
        ("dashboard refresh p50 (sim ms)", lambda f: f["dashboard_refresh_ms"]["p50"], "", _fmt),
        ("dashboard refresh p99 (sim ms)", lambda f: f["dashboard_refresh_ms"]["p99"], "", _fmt),
        ("  refreshes", lambda f: f["dashboard_refresh_ms"]["refreshes"], "", _fmt),
        ("  venue reads / refresh", lambda f: f["dashboard_reads_per_refresh"], "", _fmt),
        ("snapshot build p50 (real ms)", lambda f: f["snapshot_build_ms"]["p50"], "", _fmt),
        ("snapshot build p99 (real ms)", lambda f: f["snapshot_build_ms"]["p99"], "", _fmt),
        ("  its own CPU p50 (ms)", lambda f: f["snapshot_build_cpu_ms"]["p50"], "", _fmt),
        ("  its own CPU p99 (ms)", lambda f: f["snapshot_build_cpu_ms"]["p99"], "", _fmt),
        ("cache hit rate", lambda f: f["cache_hit_rate"], "unknown", _rate),
        (
            "persistence writes / hour",
            lambda f: f["persistence_writes_per_hour"],
            "900-1,200 (15 pos.)",
            _fmt,
        ),
        ("persistence fsyncs / hour", lambda f: f["persistence_fsyncs_per_hour"], "", _fmt),
        ("  save calls / hour", lambda f: f["persistence_saves_per_hour"], "", _fmt),
        ("API calls / hour", lambda f: f["api_calls_per_hour"], "", _fmt),
    ]
    endpoints = sorted({e for p in PROFILES if doc[p] for e in doc[p]["api_calls_by_endpoint"]})
    rows += [(f"  {e}", _entry("api_calls_by_endpoint", e), "", _fmt) for e in endpoints]
    rows += [
        ("reaction p50 (sim ms)", lambda f: f["reaction_ms"]["p50"], "", _fmt),
        ("reaction p99 (sim ms)", lambda f: f["reaction_ms"]["p99"], "", _fmt),
        ("  TP1 -> its orders p99", lambda f: f["tp1_to_orders_ms"]["p99"], "", _fmt),
        (
            "    samples / fills",
            lambda f: f"{f['tp1_to_orders_ms']['samples']} / {f['tp1_to_orders_ms']['fills']}",
            "",
            _fmt,
        ),
        ("  SL -> cancel rest p99", lambda f: f["sl_to_cancel_ms"]["p99"], "", _fmt),
        (
            "    samples / fills",
            lambda f: f"{f['sl_to_cancel_ms']['samples']} / {f['sl_to_cancel_ms']['fills']}",
            "",
            _fmt,
        ),
        (
            "monitor checks / hour",
            lambda f: f["monitor_checks_per_hour"],
            f"every 5 s ({per_position * positions:,.0f})",
            _fmt,
        ),
    ]
    tiers = sorted({t for p in PROFILES if doc[p] for t in doc[p]["monitor_checks_by_tier"]})
    rows += [(f"  {t}", _entry("monitor_checks_by_tier", t), "", _fmt) for t in tiers]
    rows += [
        ("monitors (peak)", lambda f: f["monitors"], "", _fmt),
        ("peak RSS (MB)", lambda f: f["peak_rss_mb"], "measurement needed", _fmt),
        ("  RSS per monitor (KB)", lambda f: f["rss_per_monitor_kb"], "", _fmt),
        ("CPU (s)", lambda f: f["cpu_seconds"], "measurement needed", _fmt),
        ("  CPU s per simulated minute", lambda f: f["cpu_seconds_per_sim_minute"], "", _fmt),
        ("critical events", lambda f: f["critical_events"], "", _fmt),
        ("trades closed", lambda f: f["trades_closed"], "", _fmt),
        ("PnL (USDT)", lambda f: f["pnl"], "", lambda v: f"{v:+.4f}"),
    ]
    return rows


def render(doc: Mapping[str, Any]) -> str:
    """The document as a table: one column per profile, base/opt, and the seed's original figures."""
    w = doc["workload"]
    rows = _rows(doc)
    width = max(len(r[0]) for r in rows)
    lines = [
        f"opconsole bench: {w['positions']} positions, {w['minutes']:g} simulated minutes, seed {w['seed']}, "
        f"sim.latency realistic, mirror {'on' if w['mirror'] else 'off'}; CPU {w['cpu']}",
        f"{'':<{width}}  {'baseline':>12}  {'optimized':>12}  {'base/opt':>9}  seed's original",
    ]
    for label, pick, original, show in rows:
        cells = {p: (show(pick(doc[p])) if doc[p] else "") for p in PROFILES}
        both = doc["baseline"] and doc["optimized"]
        values = [pick(doc[p]) for p in PROFILES] if both else [None, None]
        r = (
            ratio(*values)
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
            else None
        )
        lines.append(
            f"{label:<{width}}  {cells['baseline']:>12}  {cells['optimized']:>12}  "
            f"{'' if r is None else f'{r:,.1f}x':>9}  {original}".rstrip()
        )
    lines.append("")
    c = doc["comparison"]
    if c["same_trades"] is True:
        lines.append(
            f"same trades in both profiles: yes (largest PnL difference {c['max_pnl_difference']:.4f} USDT; "
            f"tolerance {c['pnl_tolerance_bps']:g} bp of a trade's notional)"
        )
    elif c["same_trades"] is False:
        lines.append(f"THE PROFILES TRADED DIFFERENTLY: {c['first_difference']}")
    for p in PROFILES:
        if doc[p] and doc[p]["task_failures"]:
            lines.append(f"{p}: engine tasks down at the end: {', '.join(doc[p]['task_failures'])}")
    for p in PROFILES:
        listed = doc[p]["critical_messages"] if doc[p] else []
        if listed:
            count = doc[p]["critical_events"]
            shown = f", the first {len(listed)}" if count > len(listed) else ""
            lines.append(f"{p}: {count} critical alert{'' if count == 1 else 's'}{shown}:")
            lines += [f"  {m['type']}: {m['message']}" for m in listed]
    lines.append(
        "sim ms: simulated time (the venue reads' realistic latency); real ms: wall time of the build; "
        "see BENCHMARKS.md"
    )
    return "\n".join(lines)
