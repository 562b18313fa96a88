#!/usr/bin/env python3
"""One simulated hour of mirrored trading with a mirror outage (issue 14, "In your note").

Runs the assembled engine on the embedded simulator (virtual clock, seeded GBM prices) with mirror
trading on: ``--trades`` trades of both approaches opened over the first 50 minutes, each on its own
symbol, and the mirror account unreachable (every call fails with a transient error) from minute
``--outage-at`` for ``--outage-minutes``. Every ``--sample-s`` simulated seconds it compares, on the
exchange itself, each main position with its mirror: the mirror should hold main's size x the
trade's quantity ratio. It reports the trades closed on each account, the drift events and repairs
the follower made, the mirror actions that failed and the alerts raised, and the largest size
difference seen outside the outage (in qty steps; one step is rounding, not drift).

Usage::

    .venv/bin/python scripts/mirror_hour.py [--trades 10] [--minutes 60] [--seed 7]
        [--outage-at 20] [--outage-minutes 10] [--volatility 2.0] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from engine.core.clock import VirtualClock, parse_iso_utc
from engine.core.models import Side
from engine.core.settings import load_settings
from engine.mirror.sizing import expected_size
from engine.runtime.assembly import EngineRuntime
from engine.runtime.scenario import ScenarioTrade, open_scenario_trade
from engine.trading.approaches import Approach
from engine.venue.errors import TransientError


def _trades(count: int, symbols: list[str], minutes: float) -> list[ScenarioTrade]:
    """``count`` trades spread over the first 5/6 of the run, alternating approach and side."""
    span = minutes * 60.0 * 5 / 6
    trades = []
    for i in range(count):
        conservative = i % 2 == 0
        trades.append(
            ScenarioTrade(
                at=60.0 + span * i / max(1, count),
                symbol=symbols[i % len(symbols)],
                side=Side.BUY if i % 4 < 2 else Side.SELL,
                approach=Approach.CONSERVATIVE if conservative else Approach.FAST,
                margin=300.0,
                leverage=10.0,
                entry_offsets_pct=(0.0, -0.3, -0.6) if conservative else (0.0,),
                tp_offsets_pct=(0.4, 0.8, 1.2, 1.6) if conservative else (0.8,),
                sl_offset_pct=-1.2 if conservative else -0.8,
            )
        )
    return trades


async def run(args: argparse.Namespace, state_dir: Path) -> dict[str, Any]:
    settings = load_settings(state_dir=state_dir).with_values(
        {
            "sim.demo_trades": 0,
            "sim.seed": args.seed,
            "sim.volatility": args.volatility,
            "sim.synthetic_symbols": args.trades,
            "mirror.enabled": True,
        },
        source="mirror_hour",
    )
    clock = VirtualClock(start=parse_iso_utc(settings.get("sim.epoch")))
    runtime = EngineRuntime(settings, state_dir, clock)
    engine = await runtime.start()
    exchange = runtime.exchange
    assert exchange is not None and engine.mirror is not None
    follower, manager = engine.mirror, engine.manager
    start = clock.now()
    symbols = [f"SYN{i + 1:04d}USDT" for i in range(args.trades)]
    pending = _trades(args.trades, symbols, args.minutes)
    outage = (start + args.outage_at * 60.0, start + (args.outage_at + args.outage_minutes) * 60.0)
    in_outage = False
    largest: dict[str, Any] = {"steps": 0.0}
    samples = 0
    try:
        while clock.now() < start + args.minutes * 60.0:
            now = clock.now()
            while pending and start + pending[0].at <= now:
                await open_scenario_trade(manager, pending.pop(0))
            if not in_outage and outage[0] <= now < outage[1]:
                exchange.inject_errors("mirror", 10**9, TransientError("mirror account unreachable (outage)"))
                in_outage = True
            elif in_outage and now >= outage[1]:
                exchange.clear_errors("mirror")
                in_outage = False
            # outside the outage, and after the follower has had one drift check to catch up
            settled = not in_outage and not (
                outage[1] <= now < outage[1] + follower.params.sync_interval_s * 2
            )
            if settled and not follower.tasks:
                samples += 1
                for link in follower.links.values():
                    ratio = link.reference_ratio
                    if ratio is None or link.state.value not in ("open", "closing"):
                        continue
                    instrument = manager.instruments[link.symbol]
                    side = Side(link.side)
                    main = sum(p.size for p in exchange.positions("main", link.symbol) if p.side is side)
                    mirror = sum(p.size for p in exchange.positions("mirror", link.symbol) if p.side is side)
                    gap = abs(mirror - expected_size(main, ratio, instrument)) / instrument.qty_step
                    if gap > largest["steps"]:
                        at_min = round((now - start) / 60.0, 2)
                        largest = {"steps": round(gap, 3), "symbol": link.symbol, "at_min": at_min}
                        largest |= {"main": main, "mirror": mirror}
            await clock.drive(now + args.sample_s)
        snapshot = (await engine.dashboard.snapshot()).data
    finally:
        await runtime.stop()
    trades = manager.ledger.trades
    alerts = Counter(a["type"] for a in engine.alerts.snapshot(100_000))
    return {
        "workload": {
            "trades": args.trades,
            "minutes": args.minutes,
            "seed": args.seed,
            "volatility": args.volatility,
            "outage_minutes": [args.outage_at, args.outage_at + args.outage_minutes],
        },
        "trades_closed": dict(Counter(t.account for t in trades)),
        "pnl": {a: round(sum(t.pnl for t in trades if t.account == a), 2) for a in ("main", "mirror")},
        "links": dict(Counter(link["state"] for link in snapshot["mirror"]["links"])),
        "counts": dict(snapshot["mirror"]["counts"]),
        "mirror_alerts": {k: v for k, v in sorted(alerts.items()) if k.startswith("mirror")},
        "open_positions": {
            a: sum(1 for p in snapshot["positions"] if p["account"] == a) for a in ("main", "mirror")
        },
        "largest_gap_outside_outage": largest,
        "samples": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=10)
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--outage-at", type=float, default=20.0)
    parser.add_argument("--outage-minutes", type=float, default=10.0)
    parser.add_argument("--volatility", type=float, default=2.0)
    parser.add_argument("--sample-s", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = asyncio.run(run(args, Path(tmp)))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:>28}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
