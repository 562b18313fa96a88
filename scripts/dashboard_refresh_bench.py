"""Dashboard refresh time, baseline vs optimized profile, on the simulator with realistic latency.

Opens N positions (default 15, spread over the main and mirror accounts, each with a stop-loss and a
take-profit order), then refreshes the dashboard R times (default 200) at the console's rate
(``ui.refresh_hz``, 2 Hz) on the virtual clock, as the console does: a refresh never overlaps the
previous one, the next starts one period after the last started or as soon as it ends. Every few
simulated seconds one position gets a small fill, so the optimized profile's invalidation is
exercised. Both profiles run the same seeded market and the same fills.

Per refresh it measures the VIRTUAL time the snapshot build took (the clock before and after: the
simulated API latency, 30-120 ms per venue call) and the real CPU time of the process during the
build. A second, short run per profile empties the cache before every refresh ("cold"): the cost
of a refresh that reads everything. It prints mean, p50, p99 and max of both, the cache hit rate
over the run (lookups served without a load) and the dashboard's venue reads per refresh (the loads of
the venue-backed categories, one read each; the TP/SL engine running alongside makes its own reads,
not counted here).

The baseline profile has ``cache_metrics`` off (nothing counted); to report its hit rate this script
turns metrics on for the baseline run only, which changes no read.

    python scripts/dashboard_refresh_bench.py [--refreshes 200] [--positions 15] [--profile both] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import random
import sys
import tempfile
import time
from collections.abc import Coroutine, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from engine.core.clock import VirtualClock, parse_iso_utc
from engine.core.models import OrderRequest, OrderType, Side, TriggerDirection
from engine.core.settings import load_settings
from engine.dashboard.cache import CATEGORIES
from engine.dashboard.snapshot import Dashboard
from engine.runtime.assembly import EngineRuntime
from engine.sim.exchange import SimExchange
from engine.sim.instruments import CATALOG

T = TypeVar("T")

NOTIONAL_USDT = 400.0
"""Size of each opened position."""
VENUE_CATEGORIES = ("account_data", "positions", "orders", "market_data")
"""The categories whose every load is one venue read (the others compose or compute)."""
FILL_USDT = 10.0
"""Size of each later fill (above the 5 USDT minimum order value)."""


@dataclass(frozen=True, slots=True)
class Result:
    profile: str
    refreshes: int
    positions: int
    mean_ms: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_mean_ms: float
    cpu_p50_ms: float
    cpu_p99_ms: float
    hit_rate: float | None
    reads_per_refresh: float
    virtual_s: float


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100.0 * len(ordered)) - 1)]


async def drive(clock: VirtualClock, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the virtual clock, jumping time from one deadline to the next until it is done."""
    task = asyncio.ensure_future(coro)
    while not task.done():
        deadline = clock.next_deadline()
        await clock.drive(until=clock.now() if deadline is None else deadline)
    return task.result()


def sim_exchange(runtime: EngineRuntime) -> SimExchange:
    """The embedded simulator the benchmark trades on (its settings select ``venue.kind = sim``)."""
    if runtime.exchange is None:
        raise SystemExit("the benchmark needs the embedded simulator (venue.kind = sim)")
    return runtime.exchange


def open_positions(runtime: EngineRuntime, count: int, rng: random.Random) -> list[tuple[str, str, Side]]:
    """``count`` positions alternating over main and mirror, one per (account, symbol), each protected."""
    exchange = sim_exchange(runtime)
    symbols = list(runtime.settings.get("sim.symbols"))
    slots = [(account, symbol) for symbol in symbols for account in runtime.accounts][:count]
    if len(slots) < count:
        raise SystemExit(f"{count} positions need more symbols x accounts than {len(slots)}")
    opened = []
    for account, symbol in slots:
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        instrument = exchange.instruments[symbol]
        last = exchange.ticker(symbol).last
        qty = max(instrument.min_qty, instrument.round_qty(NOTIONAL_USDT / last))
        exchange.place(account, OrderRequest(symbol, side, OrderType.MARKET, qty))
        away = -1 if side is Side.BUY else 1  # the losing direction
        stop = OrderRequest(
            symbol,
            side.opposite,
            OrderType.MARKET,
            qty,
            trigger_price=instrument.round_price(last * (1 + away * 0.05)),
            trigger_direction=TriggerDirection.FALL if side is Side.BUY else TriggerDirection.RISE,
            reduce_only=True,
            close_on_trigger=True,
        )
        take_profit = OrderRequest(
            symbol,
            side.opposite,
            OrderType.LIMIT,
            qty,
            price=instrument.round_price(last * (1 - away * 0.05)),
            reduce_only=True,
        )
        exchange.place(account, stop)
        exchange.place(account, take_profit)
        opened.append((account, symbol, side))
    return opened


async def refresh_loop(
    runtime: EngineRuntime,
    dashboard: Dashboard,
    refreshes: int,
    period_s: float,
    fill_every_s: float,
    opened: list[tuple[str, str, Side]],
    rng: random.Random,
    cold: bool,
) -> tuple[list[float], list[float]]:
    """The console's refresh timer, plus a small fill on one position every ``fill_every_s``; with
    ``cold`` the cache is emptied before each refresh (every piece read from the venues)."""
    clock = runtime.clock
    exchange = sim_exchange(runtime)
    virtual_ms: list[float] = []
    cpu_ms: list[float] = []
    next_fill = clock.now() + fill_every_s
    for _ in range(refreshes):
        if cold:
            for category in CATEGORIES:
                dashboard.cache.invalidate(category)
        started = clock.now()
        cpu_started = time.process_time()
        await dashboard.snapshot()
        cpu_ms.append((time.process_time() - cpu_started) * 1000.0)
        virtual_ms.append((clock.now() - started) * 1000.0)
        if clock.now() >= next_fill:  # the TP/SL engine adding to a position: an execution event
            account, symbol, side = opened[rng.randrange(len(opened))]
            instrument = exchange.instruments[symbol]
            qty = instrument.round_qty(FILL_USDT / exchange.ticker(symbol).last, "up")
            exchange.place(account, OrderRequest(symbol, side, OrderType.MARKET, qty))
            next_fill += fill_every_s
        await clock.sleep(max(0.0, started + period_s - clock.now()))
    return virtual_ms, cpu_ms


async def run_profile(profile: str, args: argparse.Namespace, state_dir: Path, cold: bool) -> Result:
    symbols = list(CATALOG)[: math.ceil(args.positions / 2)]
    settings = load_settings(state_dir=state_dir, env={}).with_values(
        {
            "sim.latency": "realistic",
            "sim.seed": args.seed,
            "sim.symbols": symbols,
            "sim.demo_trades": 0,
            "mirror.enabled": True,
        }
    )
    clock = VirtualClock(start=parse_iso_utc(settings.get("sim.epoch")))
    runtime = EngineRuntime(settings, state_dir, clock)
    engine = await runtime.start()
    try:
        if profile == "baseline":
            await runtime.profile.rollback_all()
            await runtime.profile.set("cache_metrics", "optimized")  # measurement only; see docstring
        rng = random.Random(args.seed)
        opened = open_positions(runtime, args.positions, rng)
        await clock.drive(until=clock.now() + 1.0)  # fills delivered, one price tick
        engine.cache.reset_metrics()
        started = clock.now()
        period_s = 1.0 / float(settings.get("ui.refresh_hz"))
        refreshes = args.cold_refreshes if cold else args.refreshes
        virtual_ms, cpu_ms = await drive(
            clock,
            refresh_loop(runtime, engine.dashboard, refreshes, period_s, args.fill_every, opened, rng, cold),
        )
        elapsed = clock.now() - started
        metrics = engine.cache.metrics()
        reads = sum(metrics["categories"][c]["loads"] for c in VENUE_CATEGORIES)
    finally:
        await runtime.stop()
    return Result(
        profile=f"{profile} (cold)" if cold else profile,
        refreshes=refreshes,
        positions=args.positions,
        mean_ms=round(sum(virtual_ms) / len(virtual_ms), 2),
        p50_ms=round(percentile(virtual_ms, 50), 2),
        p99_ms=round(percentile(virtual_ms, 99), 2),
        max_ms=round(max(virtual_ms), 2),
        cpu_mean_ms=round(sum(cpu_ms) / len(cpu_ms), 3),
        cpu_p50_ms=round(percentile(cpu_ms, 50), 3),
        cpu_p99_ms=round(percentile(cpu_ms, 99), 3),
        hit_rate=metrics["totals"]["hit_rate"],
        reads_per_refresh=round(reads / refreshes, 2),
        virtual_s=round(elapsed, 1),
    )


def table(results: list[Result]) -> str:
    head = (
        f"{'profile':<18} {'mean ms':>9} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} "
        f"{'cpu mean':>9} {'cpu p50':>8} {'cpu p99':>8} {'hit rate':>9} {'reads/refresh':>14}"
    )
    lines = [head]
    for r in results:
        rate = "-" if r.hit_rate is None else f"{r.hit_rate:.1%}"
        lines.append(
            f"{r.profile:<18} {r.mean_ms:>9.1f} {r.p50_ms:>9.1f} {r.p99_ms:>9.1f} {r.max_ms:>9.1f} "
            f"{r.cpu_mean_ms:>9.3f} {r.cpu_p50_ms:>8.3f} {r.cpu_p99_ms:>8.3f} {rate:>9} "
            f"{r.reads_per_refresh:>14.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refreshes", type=int, default=200)
    parser.add_argument("--positions", type=int, default=15)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--cold-refreshes", type=int, default=20, help="refreshes with an emptied cache (0: skip)"
    )
    parser.add_argument("--fill-every", type=float, default=15.0, help="simulated seconds between fills")
    parser.add_argument("--profile", choices=("both", "baseline", "optimized"), default="both")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the TP/SL engine warns about the bench's own fills
    profiles = ["baseline", "optimized"] if args.profile == "both" else [args.profile]
    results: list[Result] = []
    runs = [(p, False) for p in profiles] + [(p, True) for p in profiles if args.cold_refreshes > 0]
    for profile, cold in runs:
        with tempfile.TemporaryDirectory(prefix=f"opc-bench-{profile}-") as tmp:
            results.append(asyncio.run(run_profile(profile, args, Path(tmp), cold)))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print(
            f"dashboard refresh: {args.positions} positions, {args.refreshes} refreshes, "
            f"realistic latency, virtual clock (times are simulated; cpu is real)"
        )
        print(table(results))
        by_name = {r.profile: r for r in results}
        for label in ("", " (cold)"):
            slow, fast = by_name.get(f"baseline{label}"), by_name.get(f"optimized{label}")
            if slow and fast and fast.mean_ms > 0:
                print(f"baseline / optimized mean{label}: {slow.mean_ms / fast.mean_ms:,.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
