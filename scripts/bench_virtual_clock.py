"""How much faster than real time does the engine run on the virtual clock?

Runs the headless engine (embedded simulator, the configured symbols, no trades) for one simulated
hour in a fresh state directory, several times, and prints the median real time and the speed-up.

    python scripts/bench_virtual_clock.py [--hours H] [--runs N] [--config FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from engine.commands.headless import HeadlessOptions, run_engine
from engine.core.settings import load_settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--config")
    args = parser.parse_args()
    settings = load_settings(args.config).with_values({"sim.demo_trades": 0}, source="bench")
    simulated = args.hours * 3600
    timings = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as state:
            options = HeadlessOptions(clock="virtual", duration_s=simulated)
            started = time.perf_counter()
            asyncio.run(run_engine(settings, Path(state), options))
            timings.append(time.perf_counter() - started)
    median = statistics.median(timings)
    symbols = ", ".join(settings.get("sim.symbols"))
    tick = settings.get("sim.tick_interval_s")
    print(f"simulated {simulated:.0f} s of {symbols} (tick {tick} s), engine idle")
    print(f"real time per run: {', '.join(f'{t:.2f} s' for t in timings)}; median {median:.2f} s")
    print(f"speed-up: {simulated / median:.0f}x real time")


if __name__ == "__main__":
    main()
