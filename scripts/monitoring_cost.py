#!/usr/bin/env python3
"""What monitoring costs, optimized profile against baseline (issue 13, "Measure and report").

Runs the engine on the embedded simulator (virtual clock, ``sim.latency = "realistic"``) with
``--positions`` conservative trades, one per synthetic symbol (``SYN0001USDT`` ...), for
``--minutes`` simulated minutes: once with every profile toggle ``optimized``, once with every toggle
``baseline``, same seed, each in a fresh state directory and its own (spawned) process so the runs
share no process-global state. It reports per profile, scaled to one hour:

* REST calls per endpoint (the venue's per-path counter: one request, a batch included, is one call);
* monitor checks per urgency tier (``baseline`` when adaptive intervals are off);
* reaction latency in simulated time, p50 / p99 and the sample count:

  - **TP1 -> breakeven**: from the execution that fills a TP1 to the first later request that amends
    the same monitor's stop-loss trigger (an amend, or an amend-batch item), or that cancels that
    stop when TP1 closed the whole position (small TPs fold into TP1: there is nothing to protect);
  - **SL -> cancel rest**: from a stop-loss execution to the first later request that cancels an
    order of the same monitor (a cancel, a cancel-batch item, or a cancel-all on its symbol);

* the trades closed and their total PnL (the two profiles should trade alike; the report says
  whether they do).

A fill the engine never answered with such a request (a breakeven still waiting for the price, a stop
that left nothing to cancel) gives no sample; it is counted as unanswered.

Usage::

    .venv/bin/python scripts/monitoring_cost.py [--positions 15] [--minutes 60] [--seed 7]
        [--volatility 0.8] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import random
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.core.clock import Clock, VirtualClock
from engine.core.link_ids import parse_link_id
from engine.core.models import AmendRequest, CancelRequest, Execution, OrderAck, OrderRequest, Side
from engine.core.profile import TOGGLES
from engine.core.settings import load_settings
from engine.runtime.assembly import EngineRuntime, make_clock
from engine.runtime.scenario import Scenario, ScenarioTrade
from engine.sim.instruments import synthetic_symbols
from engine.trading.approaches import Approach
from engine.venue.base import BatchResult

PROFILES = ("optimized", "baseline")
VOLATILITY = 0.8
"""Annualised, the simulator's default: about 0.85 % per simulated hour, enough for several TP1s
(0.4 % away) and stops (1.2 % away, or breakeven after TP1) within the hour with 15 positions (seed 7:
8 TP1s, 12 stops). A higher value closes every trade early, and an hour of no positions measures
the engine's fixed cost rather than monitoring."""
# Conservative offsets as the demo trades': close enough for the hour to reach entries, TPs and stops.
ENTRY_OFFSETS_PCT = (0.0, -0.3, -0.6)
TP_OFFSETS_PCT = (0.4, 0.8, 1.2, 1.6)
SL_OFFSET_PCT = -1.2
MARGIN = 200.0
LEVERAGE = 10.0
TRADE_SPACING_S = 2.0
"""Seconds between two trades' openings (after the engine is ready)."""
PNL_TOLERANCE = 0.01
"""USDT: two total PnLs this close are the same."""
ORDER_METHODS = ("place", "amend", "cancel", "cancel_all", "place_batch", "amend_batch", "cancel_batch")


# --- recording the requests ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sent:
    """One order request as the engine sent it: simulated send time, venue method, and its items
    as (symbol, link id, order id, moves a trigger)."""

    ts: float
    method: str
    items: tuple[tuple[str, str, str, bool], ...]


def _items(method: str, args: tuple[Any, ...]) -> tuple[tuple[str, str, str, bool], ...]:
    """The items of one request (a cancel-all names only its symbol)."""
    if method == "cancel_all":
        return ((str(args[0]), "", "", False),)
    requests: Sequence[OrderRequest | AmendRequest | CancelRequest] = (
        args[0] if method.endswith("_batch") else [args[0]]
    )
    return tuple(
        (
            r.symbol,
            r.link_id,
            "" if isinstance(r, OrderRequest) else r.order_id,  # a new order has none yet
            isinstance(r, AmendRequest) and r.trigger_price is not None,
        )
        for r in requests
    )


def record_requests(venue: Any, clock: Clock, sent: list[Sent], order_links: dict[str, str]) -> None:
    """Wrap the venue instance's order methods: each call is logged in ``sent`` at its send time, and
    each ack's order id -> link id in ``order_links`` (an amend or cancel may name only the order id)."""
    for method in ORDER_METHODS:
        original: Callable[..., Awaitable[Any]] = getattr(venue, method)

        async def wrapper(
            *args: Any, _method: str = method, _original: Callable[..., Awaitable[Any]] = original
        ) -> Any:
            sent.append(Sent(clock.now(), _method, _items(_method, args)))
            result = await _original(*args)
            acks = result if isinstance(result, list) else [result]
            for answer in acks:
                ack = answer.ack if isinstance(answer, BatchResult) else answer
                if isinstance(ack, OrderAck) and ack.order_id and ack.link_id:
                    order_links[ack.order_id] = ack.link_id
            return result

        setattr(venue, method, wrapper)


# --- one run ---------------------------------------------------------------------------------------


def plan(positions: int, seed: int) -> list[ScenarioTrade]:
    """One conservative trade per synthetic symbol, seeded sides, a few seconds apart."""
    rng = random.Random(f"monitoring-cost:{seed}")
    return [
        ScenarioTrade(
            at=TRADE_SPACING_S * i,
            symbol=symbol,
            side=rng.choice([Side.BUY, Side.SELL]),
            approach=Approach.CONSERVATIVE,
            margin=MARGIN,
            leverage=LEVERAGE,
            entry_offsets_pct=ENTRY_OFFSETS_PCT,
            tp_offsets_pct=TP_OFFSETS_PCT,
            sl_offset_pct=SL_OFFSET_PCT,
        )
        for i, symbol in enumerate(synthetic_symbols(positions))
    ]


async def _run(profile: str, positions: int, minutes: float, seed: int, volatility: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix=f"monitoring-cost-{profile}-") as tmp:
        state_dir = Path(tmp)
        values: dict[str, Any] = {
            "sim.latency": "realistic",
            "sim.seed": seed,
            "sim.demo_trades": 0,
            "sim.synthetic_symbols": positions,
            "sim.volatility": volatility,
            "mirror.enabled": False,
        }
        values |= {f"profile.{toggle}": profile for toggle in TOGGLES}
        settings = load_settings(None, state_dir).with_values(values, source="monitoring_cost")
        clock = make_clock("virtual", settings, state_dir)
        if not isinstance(clock, VirtualClock):  # make_clock("virtual") always is one
            raise TypeError("a virtual clock was expected")
        runtime = EngineRuntime(settings, state_dir, clock)
        runtime.scenario = Scenario(seed, tuple(plan(positions, seed)))
        # Built before the start, so the recorders are in place before the first request.
        runtime.build_venues()
        sent: dict[str, list[Sent]] = {}
        order_links: dict[str, str] = {}
        for account, venue in runtime.venues.items():
            sent[account] = []
            record_requests(venue, clock, sent[account], order_links)
        # When breakeven is not reachable at TP1 the stop waits for the price (monitor.py says so
        # in an alert): that wait is the market's, not a reaction, and is reported apart.
        waits: list[tuple[float, str]] = []
        runtime.alerts.subscribe(
            lambda a: waits.append((a.time or 0.0, a.message)) if a.type == "breakeven_waiting" else None
        )
        start = clock.now()
        await runtime.start()
        try:
            await clock.drive(until=start + minutes * 60.0)
        finally:
            await clock.drive_while(runtime.stop())
        exchange, engine = runtime.exchange, runtime.engine
        if exchange is None or engine is None:
            raise RuntimeError("the engine did not start")
        calls: dict[str, int] = {}
        tp1: list[float] = []
        tp1_waited: list[float] = []
        sl: list[float] = []
        fills = {"tp1": 0, "sl": 0}
        for account, gateway in runtime.gateways.items():
            for endpoint, n in gateway.calls.as_dict().items():
                calls[endpoint] = calls.get(endpoint, 0) + n
            executions = exchange.executions(account, 0.0)
            lat, n_tp1, n_sl = reactions(executions, sent[account], order_links)
            for fill_ts, seconds, symbol in lat["tp1"]:
                waited = any(
                    fill_ts <= ts <= fill_ts + seconds and f":{symbol}:" in message for ts, message in waits
                )
                (tp1_waited if waited else tp1).append(seconds)
            sl += [seconds for _ts, seconds, _symbol in lat["sl"]]
            fills["tp1"] += n_tp1
            fills["sl"] += n_sl
        trades = engine.manager.ledger.trades
        return {
            "profile": profile,
            "calls": dict(sorted(calls.items())),
            "checks": dict(sorted(engine.manager.checks.items())),
            "tp1_fills": fills["tp1"],
            "sl_fills": fills["sl"],
            "tp1_to_breakeven_s": tp1,
            "tp1_breakeven_waited_s": tp1_waited,
            "sl_to_cancel_s": sl,
            "trades": [
                [t.symbol, t.side.value, t.reason, round(t.pnl, 6), t.tps_hit]
                for t in sorted(trades, key=lambda t: (t.symbol, t.opened_at))
            ],
            "failures": runtime.failures,
        }


def run_profile(profile: str, positions: int, minutes: float, seed: int, volatility: float) -> dict[str, Any]:
    """One profile's run (in a child process): the raw figures."""
    return asyncio.run(_run(profile, positions, minutes, seed, volatility))


# --- the figures ------------------------------------------------------------------------------------


def _monitor(link_id: str) -> str | None:
    parsed = parse_link_id(link_id)
    return parsed.monitor_id if parsed is not None else None


def _slot(link_id: str) -> str | None:
    parsed = parse_link_id(link_id)
    return parsed.slot if parsed is not None else None


def reactions(
    executions: Sequence[Execution], sent: Sequence[Sent], order_links: dict[str, str]
) -> tuple[dict[str, list[tuple[float, float, str]]], int, int]:
    """(fill time, seconds, symbol) from each TP1 fill to the first later stop-loss move of its
    monitor (or the stop's cancel, when TP1 closed the whole position), and from each stop-loss fill
    to the first later cancel of its monitor's orders; plus how many TP1 and SL orders filled (an
    order filled in several executions counts from its last)."""
    # An order may fill in several executions: the one that completes it is the last (the engine
    # moves the stop once TP1 is filled, not at a partial fill).
    first: dict[str, Execution] = {}
    for e in executions:
        if e.link_id and _slot(e.link_id) in ("tp1", "sl"):
            first[e.link_id] = e
    ordered = sorted(sent, key=lambda s: s.ts)
    out: dict[str, list[tuple[float, float, str]]] = {"tp1": [], "sl": []}
    n = {"tp1": 0, "sl": 0}
    for link_id, e in first.items():
        slot = _slot(link_id) or ""
        monitor = _monitor(link_id)
        n[slot] += 1
        for s in ordered:
            if s.ts < e.ts:
                continue
            if slot == "tp1" and s.method in ("amend", "amend_batch"):
                hit = any(
                    moves
                    and _slot(link or order_links.get(oid, "")) == "sl"
                    and _monitor(link or order_links.get(oid, "")) == monitor
                    for _sym, link, oid, moves in s.items
                )
            elif slot == "tp1" and s.method in ("cancel", "cancel_batch"):
                # A TP1 that closed the whole position (the smaller TPs folded into it) calls for
                # the stop to go, not to move: its cancel is the reaction.
                hit = any(
                    _slot(link or order_links.get(oid, "")) == "sl"
                    and _monitor(link or order_links.get(oid, "")) == monitor
                    for _sym, link, oid, _m in s.items
                )
            elif slot == "sl" and s.method == "cancel_all":
                hit = any(sym == e.symbol for sym, _l, _o, _m in s.items)
            elif slot == "sl" and s.method in ("cancel", "cancel_batch"):
                hit = any(
                    _monitor(link or order_links.get(oid, "")) == monitor for _s, link, oid, _m in s.items
                )
            else:
                hit = False
            if hit:
                out[slot].append((e.ts, s.ts - e.ts, e.symbol))
                break
    return out, n["tp1"], n["sl"]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` percentile (0-100) by nearest rank; None without values."""
    if not values:
        return None
    ranked = sorted(values)
    return ranked[max(0, math.ceil(q / 100.0 * len(ranked)) - 1)]


def summarize(raw: dict[str, Any], minutes: float) -> dict[str, Any]:
    """A run's figures, per hour where they are counts."""
    per_hour = 60.0 / minutes

    def latency(values: list[float], fills: int, waited: int = 0) -> dict[str, Any]:
        p50, p99 = percentile(values, 50), percentile(values, 99)
        return {
            "samples": len(values),
            "fills": fills,
            "unanswered": fills - len(values) - waited,
            "p50_ms": None if p50 is None else round(p50 * 1000.0, 1),
            "p99_ms": None if p99 is None else round(p99 * 1000.0, 1),
        }

    waited: list[float] = raw["tp1_breakeven_waited_s"]
    calls = {k: round(v * per_hour, 1) for k, v in raw["calls"].items()}
    checks = {k: round(v * per_hour, 1) for k, v in raw["checks"].items()}
    return {
        "calls_per_hour": calls,
        "calls_per_hour_total": round(sum(raw["calls"].values()) * per_hour, 1),
        "checks_per_hour": checks,
        "checks_per_hour_total": round(sum(raw["checks"].values()) * per_hour, 1),
        "tp1_to_breakeven": latency(raw["tp1_to_breakeven_s"], raw["tp1_fills"], len(waited))
        | {"waited_for_price": len(waited), "waited_s": sorted(round(w, 3) for w in waited)},
        "sl_to_cancel": latency(raw["sl_to_cancel_s"], raw["sl_fills"]),
        "trades_closed": len(raw["trades"]),
        "total_pnl": round(sum(t[3] for t in raw["trades"]), 6),
        "trades": raw["trades"],
        "task_failures": raw["failures"],
    }


def report(args: argparse.Namespace, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The JSON document: arguments, each profile's figures, the ratio and the comparison."""
    opt, base = (summarize(runs[p], args.minutes) for p in PROFILES)
    ratio = (
        base["calls_per_hour_total"] / opt["calls_per_hour_total"] if opt["calls_per_hour_total"] else None
    )
    return {
        "positions": args.positions,
        "minutes": args.minutes,
        "seed": args.seed,
        "volatility": args.volatility,
        "optimized": opt,
        "baseline": base,
        "call_ratio_baseline_over_optimized": None if ratio is None else round(ratio, 2),
        # The same trades: each symbol's side, exit reason and TPs hit (the PnL is compared apart: a
        # stop moved at another moment may fill at another price).
        "same_trades": [t[:3] + t[4:] for t in opt["trades"]] == [t[:3] + t[4:] for t in base["trades"]],
        "same_pnl": abs(opt["total_pnl"] - base["total_pnl"]) < PNL_TOLERANCE,
        "pnl_difference": round(opt["total_pnl"] - base["total_pnl"], 6),
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)


def _ratio(base: Any, opt: Any) -> str:
    if isinstance(base, int | float) and isinstance(opt, int | float) and opt:
        return f"{base / opt:.1f}x"
    return ""


def render(doc: dict[str, Any]) -> str:
    """The figures as a table: one column per profile, and baseline / optimized."""
    opt, base = doc["optimized"], doc["baseline"]
    rows: list[tuple[str, Any, Any]] = [
        ("REST calls / hour", opt["calls_per_hour_total"], base["calls_per_hour_total"])
    ]
    for endpoint in sorted(set(opt["calls_per_hour"]) | set(base["calls_per_hour"])):
        rows.append(
            (
                f"  {endpoint}",
                opt["calls_per_hour"].get(endpoint, 0.0),
                base["calls_per_hour"].get(endpoint, 0.0),
            )
        )
    rows.append(("monitor checks / hour", opt["checks_per_hour_total"], base["checks_per_hour_total"]))
    for tier in sorted(set(opt["checks_per_hour"]) | set(base["checks_per_hour"])):
        rows.append(
            (f"  {tier}", opt["checks_per_hour"].get(tier, 0.0), base["checks_per_hour"].get(tier, 0.0))
        )
    for key, label in (
        ("tp1_to_breakeven", "TP1 fill -> SL move"),
        ("sl_to_cancel", "SL fill -> cancel rest"),
    ):
        o, b = opt[key], base[key]
        rows.append((f"{label} p50 ms", o["p50_ms"], b["p50_ms"]))
        rows.append((f"{label} p99 ms", o["p99_ms"], b["p99_ms"]))
        rows.append(("  samples / fills", f"{o['samples']} / {o['fills']}", f"{b['samples']} / {b['fills']}"))
        if "waited_for_price" in o:
            rows.append(("  waited for the price", o["waited_for_price"], b["waited_for_price"]))
    rows.append(("trades closed", opt["trades_closed"], base["trades_closed"]))
    rows.append(("total PnL (USDT)", f"{opt['total_pnl']:.4f}", f"{base['total_pnl']:.4f}"))
    width = max(len(r[0]) for r in rows)
    lines = [
        f"{doc['positions']} positions, {doc['minutes']:g} simulated minutes, seed {doc['seed']}, "
        f"volatility {doc['volatility']:g}, sim.latency realistic",
        f"{'':<{width}}  {'optimized':>14}  {'baseline':>14}  {'base/opt':>9}",
    ]
    for label, o, b in rows:
        lines.append(f"{label:<{width}}  {_fmt(o):>14}  {_fmt(b):>14}  {_ratio(b, o):>9}")
    lines.append("")
    lines.append(
        f"same trades: {'yes' if doc['same_trades'] else 'NO'}; "
        f"same PnL: {'yes' if doc['same_pnl'] else 'NO'} "
        f"(optimized - baseline {doc['pnl_difference']:+.4f} USDT)"
    )
    for profile in PROFILES:
        if doc[profile]["task_failures"]:
            lines.append(
                f"{profile}: engine tasks down at the end: {', '.join(doc[profile]['task_failures'])}"
            )
    ratio = doc["call_ratio_baseline_over_optimized"]
    if ratio is not None and ratio < 10:
        lines.append(
            f"the optimized profile uses only {ratio:.1f}x fewer calls (< 10x): see the endpoints above"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--positions", type=int, default=15, help="trades, one per synthetic symbol")
    parser.add_argument("--minutes", type=float, default=60.0, help="simulated minutes")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--volatility", type=float, default=VOLATILITY, help="annualised, both runs")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--serial", action="store_true", help="run the profiles one after the other")
    args = parser.parse_args(argv)
    if args.positions < 1 or args.minutes <= 0 or args.volatility <= 0:
        parser.error("--positions must be >= 1, --minutes and --volatility > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run both profiles (in spawned processes, in parallel) and print the figures."""
    args = parse_args(argv)
    context = multiprocessing.get_context("spawn")
    workers = 1 if args.serial else len(PROFILES)
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {
            p: pool.submit(run_profile, p, args.positions, args.minutes, args.seed, args.volatility)
            for p in PROFILES
        }
        runs = {p: f.result() for p, f in futures.items()}
    doc = report(args, runs)
    print(json.dumps(doc, indent=2) if args.json else render(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
