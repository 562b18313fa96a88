"""How old the prices on the console's screen get: the mark of every position, refresh after refresh.

Runs the engine on the simulator (the three seeded demo trades, streams up, one price tick a second)
on the virtual clock and builds a snapshot at the console's rate (``ui.refresh_hz``), as the console
does (a refresh never overlaps the previous one). For every position row of every snapshot it finds
the tick that published the mark shown and reports how old that mark was when the snapshot was
built; it also counts the snapshots where the positions table and the market section (what the trade
form reads) disagree on the mark, and where an account's uPnL is not the sum of its positions'.

    python scripts/screen_staleness.py [--seconds 120] [--profile optimized|baseline] [--latency none]

The bound the console promises in the optimized profile with streams up is one refresh period plus
one tick (0.5 + 1.0 s at the defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import tempfile
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from engine.core.clock import VirtualClock, parse_iso_utc
from engine.core.models import Ticker, VenueEvent
from engine.core.settings import load_settings
from engine.runtime.assembly import EngineRuntime

T = TypeVar("T")


async def drive(clock: VirtualClock, coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on the virtual clock, jumping from one deadline to the next until it is done."""
    task = asyncio.ensure_future(coro)
    while not task.done():
        deadline = clock.next_deadline()
        await clock.drive(until=clock.now() if deadline is None else deadline)
    return task.result()


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100.0 * len(ordered)) - 1)]


class MarkHistory:
    """Every mark the venue published, per symbol, with its time."""

    def __init__(self) -> None:
        self.marks: dict[str, list[tuple[float, float]]] = {}

    def observe(self, _account: str, event: VenueEvent) -> None:
        if isinstance(event, Ticker):
            self.marks.setdefault(event.symbol, []).append((event.ts, event.mark))

    def age(self, symbol: str, mark: float, now: float, tick: float) -> float | None:
        """Seconds since the latest publication of ``mark`` (within half a tick), None if never seen."""
        for ts, published in reversed(self.marks.get(symbol, [])):
            if ts <= now and abs(published - mark) <= tick / 2:
                return now - ts
        return None


async def measure(args: argparse.Namespace, state_dir: Path) -> dict[str, Any]:
    settings = load_settings(state_dir=state_dir, env={}).with_values(
        {"sim.latency": args.latency, "sim.seed": args.seed}
    )
    clock = VirtualClock(start=parse_iso_utc(settings.get("sim.epoch")))
    runtime = EngineRuntime(settings, state_dir, clock)
    engine = await runtime.start()
    history = MarkHistory()
    engine.manager.add_observer(history.observe)
    if args.profile == "baseline":
        await runtime.profile.rollback_all()
    await clock.drive(until=clock.now() + 10.0)  # the demo trades open and fill
    exchange = runtime.exchange
    assert exchange is not None
    period = 1.0 / float(settings.get("ui.refresh_hz"))
    ages: list[float] = []
    mismatched_marks = 0
    mismatched_upnl = 0
    snapshots = 0

    async def loop() -> None:
        nonlocal mismatched_marks, mismatched_upnl, snapshots
        end = clock.now() + args.seconds
        while clock.now() < end:
            started = clock.now()
            snap = await engine.dashboard.snapshot()
            now = clock.now()
            snapshots += 1
            market = snap["market"]
            upnl_by_account: dict[str, float] = {}
            for row in snap["positions"]:
                tick = exchange.instruments[row["symbol"]].tick_size
                age = history.age(row["symbol"], row["mark_price"], now, tick)
                if age is not None:
                    ages.append(age)
                if abs(market[row["symbol"]]["mark"] - row["mark_price"]) > tick / 2:
                    mismatched_marks += 1
                upnl_by_account[row["account"]] = upnl_by_account.get(row["account"], 0.0) + row["upnl"]
            for name, account in snap["accounts"].items():
                if abs(account["upnl"] - upnl_by_account.get(name, 0.0)) > 0.01:
                    mismatched_upnl += 1
            await clock.sleep(max(0.0, started + period - clock.now()))

    try:
        await drive(clock, loop())
    finally:
        await runtime.stop()
    return {
        "profile": args.profile,
        "seconds": args.seconds,
        "refresh_s": period,
        "tick_s": float(settings.get("sim.tick_interval_s")),
        "snapshots": snapshots,
        "rows": len(ages),
        "mark_age_p50": percentile(ages, 50) if ages else None,
        "mark_age_p99": percentile(ages, 99) if ages else None,
        "mark_age_max": max(ages) if ages else None,
        "mark_mismatches": mismatched_marks,
        "upnl_mismatches": mismatched_upnl,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="simulated seconds of refreshes")
    parser.add_argument("--profile", choices=("optimized", "baseline"), default="optimized")
    parser.add_argument("--latency", choices=("none", "realistic"), default="none")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="opc-staleness-") as tmp:
        result = asyncio.run(measure(args, Path(tmp)))
    for key, value in result.items():
        print(f"{key:>16}: {value:.2f}" if isinstance(value, float) else f"{key:>16}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
